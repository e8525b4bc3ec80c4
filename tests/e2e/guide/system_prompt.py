# From ../shared/seed/claude-api-guide.ko.txt, section 시스템 프롬프트 (lines 256-276).
# The guide's snippet continues the previous one; only its two set-up lines are added here.
import anthropic

client = anthropic.Anthropic()

# 시스템 프롬프트로 역할 정의
message = client.messages.create(
    model="claude-sonnet-4-6",
    max_tokens=2048,
    system="""당신은 시니어 백엔드 개발자입니다.

규칙:
1. Python과 FastAPI에 전문성을 가지고 있습니다
2. 코드는 PEP 8 스타일을 따릅니다
3. 타입 힌트를 반드시 포함합니다
4. 보안과 성능을 우선시합니다
5. 항상 에러 핸들링을 포함합니다""",
    messages=[
        {
            "role": "user",
            "content": "FastAPI로 사용자 인증 엔드포인트를 만들어줘."
        }
    ]
)

print(message.content[0].text)
