//! The development provider's one page: "sign in as …".

use axum::response::Html;

/// The sign-in form, carrying the authorize request's parameters (`carried`) along as hidden fields, and the name
/// typed so far (both escaped: they come from the URL).
pub(super) fn sign_in(carried: &[(&str, Option<&str>)], name: Option<&str>) -> Html<String> {
    let hidden: String = carried
        .iter()
        .filter_map(|(field, value)| {
            value.map(|v| {
                format!(
                    r#"<input type="hidden" name="{field}" value="{}">"#,
                    escape(v)
                )
            })
        })
        .collect();
    let name = name.map(escape).unwrap_or_default();
    Html(format!(
        r#"<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in (wschat development provider)</title><link rel="icon" href="data:,">
<style>
body {{ font: 16px system-ui, sans-serif; max-width: 28rem; margin: 4rem auto; padding: 0 1rem; }}
label {{ display: block; margin: 1rem 0 .25rem; }}
input[type=text] {{ width: 100%; padding: .5rem; font: inherit; box-sizing: border-box; }}
button {{ margin-top: 1.5rem; padding: .5rem 1.25rem; font: inherit; }}
p.note {{ color: #666; font-size: .875rem; }}
</style></head>
<body>
<h1>Sign in</h1>
<p class="note">The wschat emulator's development provider: anyone may sign in as anyone. Not for production.</p>
<form method="post" action="authorize">
{hidden}
<label for="name">Sign in as</label>
<input type="text" id="name" name="name" value="{name}" maxlength="64" required autofocus autocomplete="username">
<label for="rooms">Rooms this sign-in grants (optional: names or prefixes like <code>team_*</code>; empty: every room)</label>
<input type="text" id="rooms" name="rooms" autocomplete="off">
<button type="submit" id="sign-in">Sign in</button>
</form>
</body></html>
"#
    ))
}

/// Text safe inside HTML and its attributes.
fn escape(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '&' => "&amp;".to_owned(),
            '<' => "&lt;".to_owned(),
            '>' => "&gt;".to_owned(),
            '"' => "&quot;".to_owned(),
            '\'' => "&#39;".to_owned(),
            c => c.to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_the_url_brings_is_escaped() {
        assert_eq!(
            escape(r#""><script>alert('x')</script>&"#),
            "&quot;&gt;&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;"
        );
    }
}
