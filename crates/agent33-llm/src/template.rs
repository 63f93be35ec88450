//! The prompt and output templates: `{content}`, `{artifact}`, `{agent}`,
//! `{id}`, replaced in one pass, so that a document that itself contains
//! `{artifact}` is sent as it is.

/// The values a template's fields take.
#[derive(Clone, Copy, Debug)]
pub struct Fields<'a> {
    /// The artifact file's text; `None` where it is not offered (output
    /// paths), and `{content}` stays as written.
    pub content: Option<&'a str>,
    /// The artifact as the task names it.
    pub artifact: &'a str,
    /// The agent's name.
    pub agent: &'a str,
    /// The task's id.
    pub id: &'a str,
}

/// The names a template may use.
pub const FIELDS: [&str; 4] = ["content", "artifact", "agent", "id"];

/// Renders `template`; unknown `{…}` stay as written.
#[must_use]
pub fn render(template: &str, fields: &Fields<'_>) -> String {
    let mut out = String::with_capacity(template.len() + fields.content.map_or(0, str::len));
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let value = after.find('}').and_then(|close| {
            let value = match &after[..close] {
                "content" => fields.content,
                "artifact" => Some(fields.artifact),
                "agent" => Some(fields.agent),
                "id" => Some(fields.id),
                _ => None,
            };
            value.map(|v| (v, close))
        });
        match value {
            Some((value, close)) => {
                out.push_str(value);
                rest = &after[close + 1..];
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_replaced_once() {
        let fields = Fields {
            content: Some("text with {artifact} inside"),
            artifact: "a.md",
            agent: "refine",
            id: "t1",
        };
        for (template, want) in [
            (
                "Improve:\n\n{content}",
                "Improve:\n\ntext with {artifact} inside",
            ),
            ("{agent}/{id}: {artifact}", "refine/t1: a.md"),
            ("{unknown} {id", "{unknown} {id"),
            ("{{id}}", "{t1}"),
            ("", ""),
        ] {
            assert_eq!(render(template, &fields), want, "{template}");
        }
        let no_content = Fields {
            content: None,
            ..fields
        };
        assert_eq!(
            render("{artifact}.{content}", &no_content),
            "a.md.{content}"
        );
    }
}
