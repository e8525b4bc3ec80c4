# The guide's prompt-caching example (캐싱 사용법), unchanged except that the guide's elided
# "long system prompt" ("...") is written out: long enough to be cached (>= 1024 tokens).
import anthropic

client = anthropic.Anthropic()

# cache_control을 사용하여 캐싱할 블록 지정
response = client.messages.create(
    model="claude-sonnet-4-6",
    max_tokens=1024,
    system=[
        {
            "type": "text",
            "text": "당신은 Python 전문가입니다. 규칙 1: PEP 8 스타일을 따르고, 한 줄은 88자를 넘기지 않습니다. 규칙 2: 모든 공개 함수에는 타입 힌트와 독스트링을 작성합니다. 규칙 3: 가변 기본 인자를 사용하지 않습니다. 규칙 4: 예외는 구체적인 타입으로 잡고, 빈 except 절을 쓰지 않습니다. 규칙 5: 경로 처리는 os.path 대신 pathlib을 사용합니다. 규칙 6: 문자열 포매팅에는 f-string을 사용합니다. 규칙 7: 리소스는 with 문으로 관리합니다. 규칙 8: 데이터 구조에는 dataclass나 Pydantic 모델을 사용합니다. 규칙 9: 비동기 코드에서는 블로킹 호출을 피하고 asyncio를 올바르게 사용합니다. 규칙 10: 테스트는 pytest로 작성하고, 픽스처를 적극적으로 활용합니다. 규칙 11: 로깅은 print 대신 logging 모듈을 사용합니다. 규칙 12: 전역 상태를 피하고 의존성은 주입합니다. 규칙 13: 함수는 작게 유지하고 한 가지 일만 하도록 합니다. 규칙 14: 매직 넘버 대신 이름 있는 상수를 사용합니다. 규칙 15: 컴프리헨션은 읽기 쉬울 때만 사용합니다. 규칙 16: import는 표준 라이브러리, 서드파티, 로컬 순서로 정렬합니다. 규칙 17: 보안에 민감한 값은 코드에 하드코딩하지 않고 환경 변수로 읽습니다. 규칙 18: SQL은 항상 매개변수화된 쿼리로 실행합니다. 규칙 19: FastAPI에서는 APIRouter로 라우트를 나누고 응답 모델을 명시합니다. 규칙 20: Pydantic 모델에는 필드 검증과 예시 값을 포함합니다. 답변은 한국어로 하고, 코드에는 간단한 주석을 답니다.",  # 긴 시스템 프롬프트
            "cache_control": {"type": "ephemeral"}  # 캐싱 활성화
        }
    ],
    messages=[
        {
            "role": "user",
            "content": "FastAPI 라우터를 작성해줘."
        }
    ]
)

# 캐시 사용량 확인
print(f"Input tokens: {response.usage.input_tokens}")
print(f"Cache creation tokens: {response.usage.cache_creation_input_tokens}")
print(f"Cache read tokens: {response.usage.cache_read_input_tokens}")

# TTL 이내 두 번째 요청 (캐시 히트, 기본 5분 또는 확장 1시간)
response2 = client.messages.create(
    model="claude-sonnet-4-6",
    max_tokens=1024,
    system=[
        {
            "type": "text",
            "text": "당신은 Python 전문가입니다. 규칙 1: PEP 8 스타일을 따르고, 한 줄은 88자를 넘기지 않습니다. 규칙 2: 모든 공개 함수에는 타입 힌트와 독스트링을 작성합니다. 규칙 3: 가변 기본 인자를 사용하지 않습니다. 규칙 4: 예외는 구체적인 타입으로 잡고, 빈 except 절을 쓰지 않습니다. 규칙 5: 경로 처리는 os.path 대신 pathlib을 사용합니다. 규칙 6: 문자열 포매팅에는 f-string을 사용합니다. 규칙 7: 리소스는 with 문으로 관리합니다. 규칙 8: 데이터 구조에는 dataclass나 Pydantic 모델을 사용합니다. 규칙 9: 비동기 코드에서는 블로킹 호출을 피하고 asyncio를 올바르게 사용합니다. 규칙 10: 테스트는 pytest로 작성하고, 픽스처를 적극적으로 활용합니다. 규칙 11: 로깅은 print 대신 logging 모듈을 사용합니다. 규칙 12: 전역 상태를 피하고 의존성은 주입합니다. 규칙 13: 함수는 작게 유지하고 한 가지 일만 하도록 합니다. 규칙 14: 매직 넘버 대신 이름 있는 상수를 사용합니다. 규칙 15: 컴프리헨션은 읽기 쉬울 때만 사용합니다. 규칙 16: import는 표준 라이브러리, 서드파티, 로컬 순서로 정렬합니다. 규칙 17: 보안에 민감한 값은 코드에 하드코딩하지 않고 환경 변수로 읽습니다. 규칙 18: SQL은 항상 매개변수화된 쿼리로 실행합니다. 규칙 19: FastAPI에서는 APIRouter로 라우트를 나누고 응답 모델을 명시합니다. 규칙 20: Pydantic 모델에는 필드 검증과 예시 값을 포함합니다. 답변은 한국어로 하고, 코드에는 간단한 주석을 답니다.",  # 동일한 텍스트
            "cache_control": {"type": "ephemeral"}
        }
    ],
    messages=[
        {
            "role": "user",
            "content": "이제 Pydantic 모델을 작성해줘."
        }
    ]
)

# 캐시 히트 확인
print(f"\n두 번째 요청:")
print(f"Cache read tokens: {response2.usage.cache_read_input_tokens}")  # 캐시된 토큰 수
