# From ../shared/seed/claude-api-guide.ko.txt, section 기본 사용법 (basic usage) (lines 183-209).
# One change: anthropic>=2 dropped temperature/top_p/top_k from create()'s keywords, so the same
# JSON goes through extra_body (see ../shared/reference/engine-notes.md). The wire request is identical.
import anthropic

client = anthropic.Anthropic(api_key="sk-ant-...")

message = client.messages.create(
    model="claude-sonnet-4-6",
    max_tokens=1024,
    system="당신은 친절한 AI 어시스턴트입니다.",  # 선택적
    messages=[
        {
            "role": "user",
            "content": "Python으로 피보나치 수열을 구하는 함수를 작성해줘."
        }
    ],
    extra_body={
        "temperature": 1.0,  # 0.0 ~ 1.0, 기본 1.0
        "top_p": 0.9,       # 선택적
        "top_k": 40,        # 선택적
    },
)

# 응답 출력
print(message.content[0].text)

# 응답 메타데이터
print(f"Model: {message.model}")
print(f"Stop reason: {message.stop_reason}")  # end_turn, max_tokens, tool_use
print(f"Input tokens: {message.usage.input_tokens}")
print(f"Output tokens: {message.usage.output_tokens}")
