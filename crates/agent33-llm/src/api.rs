//! The part of OpenAI's chat completions API this agent speaks, as our own
//! serde types: what every compatible server (vLLM, Ollama, llama.cpp,
//! LiteLLM) accepts and returns. Fields a server leaves out default.

use std::ops::AddAssign;

use serde::{Deserialize, Serialize};

/// A `POST /chat/completions` body (non-streaming).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ChatRequest {
    /// The model's name at the provider.
    pub model: String,
    /// The conversation: a system message, then the user's.
    pub messages: Vec<Message>,
    /// Sampling temperature.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// The answer's length limit in tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
}

/// One message of a conversation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
}

impl Message {
    /// A message with a role and a text.
    #[must_use]
    pub fn new(role: &str, content: impl Into<String>) -> Self {
        Self {
            role: role.to_owned(),
            content: content.into(),
        }
    }
}

/// A chat completion.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct ChatResponse {
    /// The answers; this agent asks for one.
    #[serde(default)]
    pub choices: Vec<Choice>,
    /// What the request cost, when the server says.
    #[serde(default)]
    pub usage: Option<Usage>,
}

/// One answer.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct Choice {
    /// The answer's message.
    #[serde(default)]
    pub message: AnswerMessage,
    /// `stop`, or `length` when cut at `max_tokens`.
    #[serde(default)]
    pub finish_reason: Option<String>,
}

/// An answer's message; its content may be null (a tool call, a refusal).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct AnswerMessage {
    /// The text.
    #[serde(default)]
    pub content: Option<String>,
}

/// Tokens a request used.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Tokens of the prompt.
    #[serde(default)]
    pub prompt_tokens: u64,
    /// Tokens of the answer.
    #[serde(default)]
    pub completion_tokens: u64,
    /// Both.
    #[serde(default)]
    pub total_tokens: u64,
}

impl AddAssign for Usage {
    fn add_assign(&mut self, other: Self) {
        self.prompt_tokens += other.prompt_tokens;
        self.completion_tokens += other.completion_tokens;
        self.total_tokens += other.total_tokens;
    }
}

/// An error body, `{"error": {"message", "type", "code"}}`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct ErrorBody {
    /// The error.
    #[serde(default)]
    pub error: ErrorDetail,
}

/// The error inside an [`ErrorBody`].
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct ErrorDetail {
    /// The provider's own words.
    #[serde(default)]
    pub message: String,
    /// `requests`, `tokens`, `insufficient_quota`, `server_error`, …
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    /// `rate_limit_exceeded`, `insufficient_quota`, …; some servers send a
    /// number.
    #[serde(default)]
    pub code: Option<serde_json::Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_answers_of_servers_that_leave_things_out() {
        let full: ChatResponse = serde_json::from_str(
            r#"{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4,"prompt_tokens_details":{"cached_tokens":0}}}"#,
        )
        .expect("an OpenAI answer");
        assert_eq!(full.choices[0].message.content.as_deref(), Some("hi"));
        assert_eq!(full.usage.map(|u| u.total_tokens), Some(4));
        let bare: ChatResponse =
            serde_json::from_str(r#"{"choices":[{"message":{"content":null}}]}"#)
                .expect("a bare answer");
        assert_eq!(bare.usage, None);
        assert_eq!(bare.choices[0].finish_reason, None);
    }

    #[test]
    fn requests_leave_unset_options_out() {
        let request = ChatRequest {
            model: "m".into(),
            messages: vec![Message::new("user", "hi")],
            temperature: None,
            max_tokens: Some(5),
        };
        assert_eq!(
            serde_json::to_string(&request).expect("serialises"),
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":5}"#
        );
    }
}
