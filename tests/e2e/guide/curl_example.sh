#!/usr/bin/env bash
# From ../shared/seed/claude-api-guide.ko.txt, section cURL 예시 (lines 730-743). The one change:
# the host comes from ANTHROPIC_BASE_URL (as the SDKs do) instead of the literal api.anthropic.com.
set -euo pipefail
curl "${ANTHROPIC_BASE_URL:-https://api.anthropic.com}"/v1/messages \
  -H "x-api-key: $ANTHROPIC_API_KEY" \
  -H "anthropic-version: 2023-06-01" \
  -H "content-type: application/json" \
  -d '{
    "model": "claude-sonnet-4-6",
    "max_tokens": 1024,
    "messages": [
      {
        "role": "user",
        "content": "안녕하세요!"
      }
    ]
  }'
