# From ../shared/seed/claude-api-guide.ko.txt, section 다중 턴 대화 (multi-turn) (lines 214-251), unchanged.
import anthropic

client = anthropic.Anthropic()

# 대화 히스토리 관리
conversation = [
    {"role": "user", "content": "내 이름은 철수야."},
]

# 첫 번째 요청
message1 = client.messages.create(
    model="claude-sonnet-4-6",
    max_tokens=1024,
    messages=conversation
)

print("Claude:", message1.content[0].text)

# 대화에 Claude의 응답 추가
conversation.append({
    "role": "assistant",
    "content": message1.content[0].text
})

# 사용자 메시지 추가
conversation.append({
    "role": "user",
    "content": "내 이름이 뭐라고 했지?"
})

# 두 번째 요청
message2 = client.messages.create(
    model="claude-sonnet-4-6",
    max_tokens=1024,
    messages=conversation
)

print("Claude:", message2.content[0].text)  # "철수"라고 기억함
