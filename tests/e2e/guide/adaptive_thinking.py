import anthropic

client = anthropic.Anthropic()

# Adaptive Thinking: 작업 복잡도에 따라 추론 깊이 자동 조절
response = client.messages.create(
    model="claude-opus-4-7",
    max_tokens=16000,
    thinking={
        "type": "adaptive"
    },
    messages=[{
        "role": "user",
        "content": "이 마이크로서비스 아키텍처의 성능 병목을 분석하고 개선안을 제시해줘"
    }]
)

for block in response.content:
    if block.type == "thinking":
        print(f"[사고 블록: {len(block.thinking)}자]")
    else:
        print(block.text)
