//! The handlebars templates and the stylesheet from `views/`, embedded into the
//! binary at build time.

use handlebars::{Context, Handlebars};
use rust_embed::RustEmbed;
use serde_json::Value;
use std::sync::LazyLock;
use tracing::error;

#[derive(RustEmbed)]
#[folder = "../views"]
#[include = "*.hbs"]
struct Templates;

/// The files served under `/static/`.
#[derive(RustEmbed)]
#[folder = "../views/static"]
pub struct Assets;

static VIEWS: LazyLock<Handlebars<'static>> = LazyLock::new(|| {
    let mut views = Handlebars::new();
    views.set_strict_mode(false);
    views.register_escape_fn(escape_html);
    views.register_helper("thousands", Box::new(thousands_helper));
    views
        .register_embed_templates_with_extension::<Templates>(".hbs")
        .expect("the templates in views/ are valid handlebars (checked by the tests)");
    views
});

/// `{{thousands price}}`: a whole number with a comma between each group of
/// three digits (`1,234,567`), as `live.js` writes it too.
fn thousands_helper(
    helper: &handlebars::Helper,
    _: &Handlebars,
    _: &handlebars::Context,
    _: &mut handlebars::RenderContext,
    out: &mut dyn handlebars::Output,
) -> handlebars::HelperResult {
    let value = helper.param(0).map(|p| p.value());
    let text = match value.and_then(serde_json::Value::as_i64) {
        Some(number) => thousands(number),
        None => value.map(|v| v.to_string()).unwrap_or_default(),
    };
    out.write(&escape_html(&text))?;
    Ok(())
}

/// `1234567` as `1,234,567`.
pub fn thousands(number: i64) -> String {
    let digits = number.unsigned_abs().to_string();
    let mut grouped = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if number < 0 {
        grouped.push('-');
    }
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    grouped
}

/// Escapes the five characters that matter in HTML text and quoted attributes
/// (handlebars' default also escapes `=` and backticks, which garbles links).
fn escape_html(raw: &str) -> String {
    let mut escaped = String::with_capacity(raw.len());
    for c in raw.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#x27;"),
            c => escaped.push(c),
        }
    }
    escaped
}

/// Renders a template. Every `{{value}}` is HTML-escaped; the templates never
/// use the raw `{{{value}}}` form but once: `{{{rows}}}` in `index.hbs`, which
/// is handlebars' own output of `product_row.hbs` (see `rows.rs`). The data is taken as a JSON value, which
/// handlebars reads as it is (given anything else, it would first convert it
/// to one, a copy of every string in it).
pub fn render(template: &str, data: Value) -> Result<String, handlebars::RenderError> {
    VIEWS
        .render_with_context(template, &Context::from(data))
        .inspect_err(|e| {
            error!(template, error = %e, "template failed to render");
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_grouped_by_thousands() {
        for (number, shown) in [
            (0, "0"),
            (999, "999"),
            (1000, "1,000"),
            (1234567, "1,234,567"),
            (-12345, "-12,345"),
            (1 << 53, "9,007,199,254,740,992"),
        ] {
            assert_eq!(thousands(number), shown);
        }
    }
}
