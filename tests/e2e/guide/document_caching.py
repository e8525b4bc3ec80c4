# The guide's document-caching example (문서 캐싱), unchanged. It continues the previous
# example in the guide, whose first lines (the import and the client) are repeated here.
import anthropic

client = anthropic.Anthropic()

# 긴 문서를 캐싱하여 여러 질문
with open("long_document.txt", "r") as f:
    document = f.read()  # 예: 50,000 토큰

# 첫 번째 질문 (캐시 생성)
response1 = client.messages.create(
    model="claude-sonnet-4-6",
    max_tokens=1024,
    messages=[
        {
            "role": "user",
            "content": [
                {
                    "type": "text",
                    "text": f"다음 문서를 기반으로 답변해주세요:\n\n{document}",
                    "cache_control": {"type": "ephemeral"}
                },
                {
                    "type": "text",
                    "text": "주요 내용을 요약해주세요."
                }
            ]
        }
    ]
)

print(response1.content[0].text)
print(f"\n캐시 생성: {response1.usage.cache_creation_input_tokens} tokens")

# 두 번째 질문 (캐시 재사용)
response2 = client.messages.create(
    model="claude-sonnet-4-6",
    max_tokens=1024,
    messages=[
        {
            "role": "user",
            "content": [
                {
                    "type": "text",
                    "text": f"다음 문서를 기반으로 답변해주세요:\n\n{document}",
                    "cache_control": {"type": "ephemeral"}
                },
                {
                    "type": "text",
                    "text": "주요 등장인물은 누구인가요?"
                }
            ]
        }
    ]
)

print(response2.content[0].text)
print(f"\n캐시 읽기: {response2.usage.cache_read_input_tokens} tokens")

# 비용 절감 계산
normal_cost = 50000 * 3.00 / 1_000_000  # 변동
cached_cost = 50000 * 0.30 / 1_000_000  # 변동
print(f"\n비용 절감: ${normal_cost - cached_cost:.4f} (90%)")
