# From ../shared/seed/claude-api-guide.ko.txt, section 빠른 시작 (quick start) (lines 143-155), unchanged.
# 3. 첫 요청
import anthropic

client = anthropic.Anthropic()

message = client.messages.create(
    model="claude-sonnet-4-6",
    max_tokens=1024,
    messages=[
        {"role": "user", "content": "안녕하세요!"}
    ]
)

