# From ../shared/seed/claude-api-guide.ko.txt, section 비전 (이미지 입력) / 이미지 분석 (lines 510-545), unchanged.
# It reads diagram.png from the working directory (the test writes one there).
import anthropic
import base64

client = anthropic.Anthropic()

# 이미지 파일 읽기
with open("diagram.png", "rb") as f:
    image_data = base64.standard_b64encode(f.read()).decode("utf-8")

# 이미지와 함께 요청
message = client.messages.create(
    model="claude-sonnet-4-6",
    max_tokens=1024,
    messages=[
        {
            "role": "user",
            "content": [
                {
                    "type": "image",
                    "source": {
                        "type": "base64",
                        "media_type": "image/png",  # image/jpeg, image/gif, image/webp
                        "data": image_data,
                    },
                },
                {
                    "type": "text",
                    "text": "이 다이어그램을 설명해주세요."
                }
            ],
        }
    ],
)

print(message.content[0].text)
