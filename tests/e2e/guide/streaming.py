# From ../shared/seed/claude-api-guide.ko.txt, section Python 스트리밍 (streaming) (lines 283-302), unchanged.
import anthropic

client = anthropic.Anthropic()

# stream=True로 스트리밍 활성화
with client.messages.stream(
    model="claude-sonnet-4-6",
    max_tokens=1024,
    messages=[
        {"role": "user", "content": "긴 이야기를 들려줘."}
    ],
) as stream:
    for text in stream.text_stream:
        print(text, end="", flush=True)

print()  # 줄바꿈

# 최종 메시지 객체 얻기
message = stream.get_final_message()
print(f"\n\nTotal tokens: {message.usage.input_tokens + message.usage.output_tokens}")
