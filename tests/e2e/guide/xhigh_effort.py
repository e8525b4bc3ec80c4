# The guide's xhigh snippet continues the adaptive one, whose `client` it uses. With the SDK's
# default timeout, anthropic 2.x refuses a non-streaming max_tokens=32000 request before sending it
# ("Streaming is required for operations that may take longer than 10 minutes"), against any
# server; a user running it sets a timeout, as here. Below the marker, the guide's lines unchanged.
import anthropic

client = anthropic.Anthropic(timeout=600)

# --- the guide's snippet ---
# xhigh effort: 최고 수준 심층 추론
# task_budget: 에이전트 루프 전체 토큰 예산 (thinking + tool calls + output)
response = client.messages.create(
    model="claude-opus-4-7",
    max_tokens=32000,
    thinking={
        "type": "adaptive",
        "effort": "xhigh",
        "task_budget": 50000
    },
    messages=[{
        "role": "user",
        "content": "복잡한 분산 시스템 설계 문제를 단계별로 해결해줘"
    }]
)

# --- end of the guide's snippet ---
print("Stop reason:", response.stop_reason)
print("Blocks:", [block.type for block in response.content])
