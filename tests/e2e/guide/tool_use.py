import anthropic
import json

client = anthropic.Anthropic()

# 툴 정의
tools = [
    {
        "name": "get_weather",
        "description": "특정 위치의 현재 날씨를 가져옵니다.",
        "input_schema": {
            "type": "object",
            "properties": {
                "location": {
                    "type": "string",
                    "description": "도시 이름, 예: Seoul"
                },
                "unit": {
                    "type": "string",
                    "enum": ["celsius", "fahrenheit"],
                    "description": "온도 단위"
                }
            },
            "required": ["location"]
        }
    },
    {
        "name": "calculate",
        "description": "수학 계산을 수행합니다.",
        "input_schema": {
            "type": "object",
            "properties": {
                "expression": {
                    "type": "string",
                    "description": "계산식, 예: 2 + 2"
                }
            },
            "required": ["expression"]
        }
    }
]

# 첫 요청
message = client.messages.create(
    model="claude-sonnet-4-6",
    max_tokens=1024,
    tools=tools,
    messages=[
        {"role": "user", "content": "서울의 현재 날씨는 어때?"}
    ]
)

print("Response:", json.dumps(message.model_dump(), indent=2, ensure_ascii=False))
import anthropic

client = anthropic.Anthropic()

# 실제 툴 구현
def get_weather(location: str, unit: str = "celsius") -> str:
    # 실제로는 API 호출
    return json.dumps({
        "location": location,
        "temperature": 22,
        "unit": unit,
        "condition": "맑음"
    })

def calculate(expression: str) -> str:
    try:
        result = eval(expression)  # 실제로는 안전한 파서 사용
        return str(result)
    except Exception as e:
        return f"Error: {e}"

# 툴 맵
tool_functions = {
    "get_weather": get_weather,
    "calculate": calculate,
}

# 대화 시작
messages = [
    {"role": "user", "content": "서울 날씨를 알려주고, 화씨로 변환해줘."}
]

while True:
    # Claude 호출
    response = client.messages.create(
        model="claude-sonnet-4-6",
        max_tokens=4096,
        tools=tools,
        messages=messages
    )

    print(f"\nStop reason: {response.stop_reason}")

    # 종료 조건
    if response.stop_reason == "end_turn":
        print(f"\nFinal answer: {response.content[0].text}")
        break

    # 툴 사용 요청 처리
    if response.stop_reason == "tool_use":
        # Assistant 응답 추가
        messages.append({
            "role": "assistant",
            "content": response.content
        })

        # 툴 실행
        tool_results = []
        for block in response.content:
            if block.type == "tool_use":
                tool_name = block.name
                tool_input = block.input

                print(f"\nCalling tool: {tool_name}({tool_input})")

                # 툴 실행
                tool_function = tool_functions[tool_name]
                tool_result = tool_function(**tool_input)

                print(f"Tool result: {tool_result}")

                tool_results.append({
                    "type": "tool_result",
                    "tool_use_id": block.id,
                    "content": tool_result
                })

        # 툴 결과 추가
        messages.append({
            "role": "user",
            "content": tool_results
        })

