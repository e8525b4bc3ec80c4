from sijo.output.stops import StopMatcher


def feed_all(matcher: StopMatcher, pieces: list[str]) -> tuple[str, str | None]:
    out = []
    for piece in pieces:
        scan = matcher.feed(piece)
        out.append(scan.text)
        if scan.matched is not None:
            return "".join(out), scan.matched
    out.append(matcher.flush())
    return "".join(out), None


def test_no_stop_sequences_passes_text_through() -> None:
    assert feed_all(StopMatcher([]), ["a", "b"]) == ("ab", None)


def test_match_inside_one_piece_cuts_before_it() -> None:
    assert feed_all(StopMatcher(["END"]), ["hello END world"]) == ("hello ", "END")


def test_match_split_across_pieces_is_never_emitted() -> None:
    matcher = StopMatcher(["###"])
    assert matcher.feed("ab#").text == "ab"
    assert matcher.feed("#").text == ""
    scan = matcher.feed("#tail")
    assert (scan.text, scan.matched) == ("", "###")


def test_held_text_is_released_when_it_stops_matching() -> None:
    assert feed_all(StopMatcher(["###"]), ["a#", "#b", "c"]) == ("a##bc", None)


def test_earliest_of_several_stop_sequences_wins() -> None:
    assert feed_all(StopMatcher(["world", "lo w"]), ["hello world"]) == ("hel", "lo w")


def test_multibyte_stop_sequence() -> None:
    assert feed_all(StopMatcher(["감사"]), ["안녕하세요 감", "사합니다"]) == ("안녕하세요 ", "감사")


def test_the_stop_sequence_completed_first_wins_however_text_is_chunked() -> None:
    stops = ["xyz_long_sequence", "long"]
    assert feed_all(StopMatcher(stops), ["xyz_long_sequence"]) == ("xyz_", "long")
    assert feed_all(StopMatcher(stops), list("xyz_long_sequence")) == ("xyz_", "long")
