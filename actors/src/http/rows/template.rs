//! `views/product_row.hbs`, taken apart once so that a row costs a few
//! copies instead of a handlebars rendering (most of a list page's time when
//! its rows are not in the rows cache).
//!
//! The template stays the one source of a row's HTML: at first use it is
//! rendered by handlebars for a probe row whose values cannot be mistaken
//! for markup, and split where they appear into its fixed text and its
//! values. A row is then that text with the row's values between, escaped
//! as [`views`] escapes them. Before it is used, the split is checked
//! against handlebars on rows that tell the difference (characters that
//! need escaping, empty and negative values); a template that does more
//! than print the four values (a condition, a raw `{{{value}}}`) fails the
//! check, and each row is then rendered by handlebars.

use super::ListRow;
use crate::http::views;
use crate::http::views::taken_apart::{Part, split};
use handlebars::{RenderError, RenderErrorReason};
use std::fmt::Write as _;
use std::sync::LazyLock;
use tracing::warn;

/// The product row's template, taken apart; `None` when it cannot be.
static ROW: LazyLock<Option<RowTemplate>> = LazyLock::new(|| {
    let compiled = RowTemplate::compile();
    if compiled.is_none() {
        warn!(
            "product_row.hbs does more than print a row's values: each row is rendered by handlebars"
        );
    }
    compiled
});

/// A value a row shows.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Value {
    Id,
    Name,
    Price,
    Manufacturer,
}

#[derive(Debug)]
pub(super) struct RowTemplate {
    parts: Vec<Part<Value>>,
}

/// The probe row: values that markup cannot contain (private-use
/// characters; an id and a price whose digits differ).
const PROBE_ID: i64 = 7_340_291_856;
const PROBE_PRICE: i64 = 1_357_924_680_135;
const PROBE_NAME: &str = "\u{E000}name\u{E000}";
const PROBE_MANUFACTURER: &str = "\u{E000}manufacturer\u{E000}";

impl RowTemplate {
    /// `product_row.hbs` taken apart, or `None` when rows rendered from the
    /// parts would differ from handlebars' on any of the checked rows.
    pub(super) fn compile() -> Option<Self> {
        let probe = ListRow::new(PROBE_ID, PROBE_NAME, PROBE_PRICE, PROBE_MANUFACTURER);
        let rendered = probe.render_with_handlebars().ok()?;
        let values = [
            (PROBE_ID.to_string(), Value::Id),
            (PROBE_NAME.to_owned(), Value::Name),
            (views::thousands(PROBE_PRICE), Value::Price),
            (PROBE_MANUFACTURER.to_owned(), Value::Manufacturer),
        ];
        let parts = split(&rendered, &values);
        let template = RowTemplate { parts };
        template.agrees_with_handlebars().then_some(template)
    }

    /// Rows that tell a faithful split from a wrong one render the same both ways.
    fn agrees_with_handlebars(&self) -> bool {
        [
            ListRow::new(1, "<b>\"Tom\" & 'Jerry'</b>", -1_234_567, "A&B <Co>"),
            ListRow::new(-42, "", 0, ""),
            ListRow::new(i64::MAX, "ünïcödé ✓", i64::MIN, "=`{{x}}`"),
        ]
        .iter()
        .all(|row| {
            let mut ours = String::new();
            self.render_into(row, &mut ours);
            row.render_with_handlebars()
                .is_ok_and(|theirs| theirs == ours)
        })
    }

    /// `row` as the template renders it, written at the end of `out`.
    pub(super) fn render_into(&self, row: &ListRow, out: &mut String) {
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Value(Value::Id) => {
                    let _ = write!(out, "{}", row.id);
                }
                Part::Value(Value::Name) => views::escape_html_into(&row.name, out),
                Part::Value(Value::Price) => views::thousands_into(row.price, out),
                Part::Value(Value::Manufacturer) => views::escape_html_into(&row.manufacturer, out),
            }
        }
    }
}

/// `row`'s HTML, written at the end of `out`: from the parts when the
/// template could be taken apart, else by handlebars.
pub(super) fn render_into(row: &ListRow, out: &mut String) -> Result<(), RenderError> {
    match &*ROW {
        Some(template) => template.render_into(row, out),
        None => out.push_str(&row.render_with_handlebars()?),
    }
    Ok(())
}

impl ListRow<'_> {
    /// This row rendered by handlebars from `product_row.hbs`.
    pub(super) fn render_with_handlebars(&self) -> Result<String, RenderError> {
        let row = serde_json::to_value(self).map_err(RenderErrorReason::SerdeError)?;
        views::render("product_row", row)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::views::taken_apart::texts::markup;
    use proptest::prelude::*;

    #[test]
    fn the_product_row_template_is_taken_apart() {
        let template = RowTemplate::compile().expect("product_row.hbs prints only a row's values");
        let values: Vec<Value> = template
            .parts
            .iter()
            .filter_map(|part| match part {
                Part::Value(value) => Some(*value),
                Part::Text(_) => None,
            })
            .collect();
        assert_eq!(
            values,
            [
                Value::Id,
                Value::Id,
                Value::Id,
                Value::Name,
                Value::Price,
                Value::Manufacturer
            ]
        );
    }

    /// Text with every character the escaping treats, among others.
    fn text() -> impl Strategy<Value = String> {
        markup(24)
    }

    proptest! {
        #[test]
        fn a_row_from_the_parts_is_the_row_handlebars_renders(
            id in any::<i64>(),
            name in text(),
            price in prop_oneof![any::<i64>(), -1_000_000i64..1_000_000],
            manufacturer in text(),
        ) {
            // The template the service uses, taken apart once.
            let template = ROW.as_ref().expect("product_row.hbs prints only a row's values");
            let row = ListRow::new(id, &name, price, &manufacturer);
            let mut ours = String::new();
            template.render_into(&row, &mut ours);
            prop_assert_eq!(ours, row.render_with_handlebars().unwrap());
        }
    }

    #[test]
    fn a_split_that_differs_from_the_template_is_refused() {
        let wrong = RowTemplate {
            parts: vec![Part::Text("<td>".into()), Part::Value(Value::Name)],
        };
        assert!(!wrong.agrees_with_handlebars());
    }
}
