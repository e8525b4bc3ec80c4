# From ../shared/seed/claude-api-guide.ko.txt, section 고급 스트리밍 (advanced streaming) (lines 307-335), unchanged.
import anthropic

client = anthropic.Anthropic()

# 이벤트별 처리
with client.messages.stream(
    model="claude-sonnet-4-6",
    max_tokens=1024,
    messages=[{"role": "user", "content": "안녕하세요!"}],
) as stream:
    for event in stream:
        if event.type == "message_start":
            print(f"메시지 시작: {event.message.model}")

        elif event.type == "content_block_start":
            print("콘텐츠 블록 시작")

        elif event.type == "content_block_delta":
            if hasattr(event.delta, 'text'):
                print(event.delta.text, end="", flush=True)

        elif event.type == "content_block_stop":
            print("\n콘텐츠 블록 종료")

        elif event.type == "message_delta":
            print(f"\nStop reason: {event.delta.stop_reason}")

        elif event.type == "message_stop":
            print("메시지 종료")
