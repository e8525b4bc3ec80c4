# The guide's two-image snippet (비전 / 여러 이미지, lines 547-584) continues the one before it, whose
# `client` and `base64` it uses; those two lines come first here. Below the marker, the guide's lines
# unchanged. It reads before.jpg and after.jpg from the working directory (the test writes them).
import anthropic
import base64

client = anthropic.Anthropic()

# --- the guide's snippet ---
# 여러 이미지 비교
def load_image(path: str) -> str:
    with open(path, "rb") as f:
        return base64.standard_b64encode(f.read()).decode("utf-8")

message = client.messages.create(
    model="claude-sonnet-4-6",
    max_tokens=2048,
    messages=[
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "이 두 이미지의 차이점을 설명해주세요:"},
                {
                    "type": "image",
                    "source": {
                        "type": "base64",
                        "media_type": "image/jpeg",
                        "data": load_image("before.jpg"),
                    },
                },
                {"type": "text", "text": "vs"},
                {
                    "type": "image",
                    "source": {
                        "type": "base64",
                        "media_type": "image/jpeg",
                        "data": load_image("after.jpg"),
                    },
                },
            ],
        }
    ],
)

print(message.content[0].text)
