//! The handlebars templates and the stylesheet from `views/`, embedded into the
//! binary at build time.

use handlebars::Handlebars;
use rust_embed::RustEmbed;
use serde::Serialize;
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
    views
        .register_embed_templates_with_extension::<Templates>(".hbs")
        .expect("the templates in views/ are valid handlebars (checked by the tests)");
    views
});

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
/// use the raw `{{{value}}}` form.
pub fn render(template: &str, data: &impl Serialize) -> Result<String, handlebars::RenderError> {
    VIEWS.render(template, data).inspect_err(|e| {
        error!(template, error = %e, "template failed to render");
    })
}
