//! The handlebars templates and the stylesheet from `views/`, embedded into the
//! binary at build time.

use handlebars::{Context, Handlebars};
use rust_embed::RustEmbed;
use serde_json::Value;
use std::sync::LazyLock;
use tracing::error;

pub mod taken_apart;

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
    let mut grouped = String::with_capacity(27);
    thousands_into(number, &mut grouped);
    grouped
}

/// [`thousands`], written at the end of `out`.
pub fn thousands_into(number: i64, out: &mut String) {
    let mut buffer = itoa::Buffer::new();
    let digits = buffer.format(number.unsigned_abs());
    if number < 0 {
        out.push('-');
    }
    for (i, digit) in digits.char_indices() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
}

/// Escapes the five characters that matter in HTML text and quoted attributes
/// (handlebars' default also escapes `=` and backticks, which garbles links).
fn escape_html(raw: &str) -> String {
    let mut escaped = String::with_capacity(raw.len());
    escape_html_into(raw, &mut escaped);
    escaped
}

/// [`escape_html`], written at the end of `out`.
pub fn escape_html_into(raw: &str, out: &mut String) {
    let mut plain = 0;
    for (at, byte) in raw.bytes().enumerate() {
        let escaped = match byte {
            b'&' => "&amp;",
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'"' => "&quot;",
            b'\'' => "&#x27;",
            _ => continue,
        };
        out.push_str(&raw[plain..at]);
        out.push_str(escaped);
        plain = at + 1;
    }
    out.push_str(&raw[plain..]);
}

/// Renders a template. Every `{{value}}` is HTML-escaped; the templates use
/// the raw `{{{value}}}` form twice, each for the HTML of another template:
/// `{{{rows}}}` in `index.hbs` (`product_row.hbs`'s, see `rows.rs`) and
/// `{{{attributes}}}` in `product.hbs` (`attribute_row.hbs`'s). The list and
/// the detail page are written from their templates taken apart
/// ([`taken_apart`], `http/page_parts.rs`), which renders each of their
/// shapes here once. The data is taken as a JSON value, which
/// handlebars reads as it is (given anything else, it would first convert it
/// to one, a copy of every string in it).
///
/// A page starts with `{{> head {} title=… who=who}}` and ends with
/// `{{> foot {} }}`: the `{}` gives each partial only the values named after
/// it (without it, handlebars gives a partial a copy of the page's whole
/// data, for the list its rows too).
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
    fn a_page_is_the_head_its_body_and_the_foot_with_only_the_values_the_head_is_given() {
        let page = render(
            "error",
            serde_json::json!({"status": 404, "title": "Not <Found>", "message": "gone", "paused": {"since": "x", "why": "y"}}),
        )
        .unwrap();
        assert!(page.starts_with("<!doctype html>"), "{page}");
        assert!(
            page.contains("<title>Not &lt;Found&gt; · Products</title>"),
            "{page}"
        );
        let body = page.find("gone").unwrap();
        assert!(page.find("<main id=\"main\">").unwrap() < body, "{page}");
        assert!(body < page.find("</main>").unwrap(), "{page}");
        assert!(page.trim_end().ends_with("</html>"), "{page}");
        // Not named for the head by `error.hbs`: not shown.
        assert!(!page.contains("paused"), "{page}");
    }

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
