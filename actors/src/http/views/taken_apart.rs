//! A page's template taken apart, one shape of its data at a time, so that
//! rendering the page is copying its fixed text with its texts between
//! instead of handlebars interpreting the template (two thirds of the
//! detail page's time in the handler went to handlebars).
//!
//! The template stays the one source of the page's HTML. A page names its
//! texts (what it prints) and its shape (which conditions hold: whether an
//! optional part is there, whether an operator is signed in). For each shape
//! the first time it is asked for, handlebars renders the template with
//! probe texts that markup cannot contain, and the output is split where
//! they appear. Before the parts are used they are checked against
//! handlebars on texts that tell a faithful split from a wrong one (markup
//! characters, empty texts): a template that tests a text in a condition
//! that is not part of the shape, or prints it through a helper, fails the
//! check, and that shape is rendered by handlebars every time.

use super::{escape_html_into, render};
use handlebars::RenderError;
use serde_json::Value;
use std::sync::OnceLock;
use tracing::warn;

/// A piece of a rendered template: fixed text, or where a value goes.
#[derive(Debug, PartialEq)]
pub enum Part<V> {
    Text(Box<str>),
    Value(V),
}

/// `rendered` split where each probe appears: the text between, and the
/// value each probe stands for. A probe that never appears leaves no part.
pub fn split<V: Copy>(rendered: &str, probes: &[(String, V)]) -> Vec<Part<V>> {
    let mut parts = Vec::new();
    let mut rest = rendered;
    while let Some((at, len, value)) = probes
        .iter()
        .filter_map(|(probe, value)| {
            rest.find(probe.as_str())
                .map(|at| (at, probe.len(), *value))
        })
        .min_by_key(|&(at, ..)| at)
    {
        if at > 0 {
            parts.push(Part::Text(rest[..at].into()));
        }
        parts.push(Part::Value(value));
        rest = &rest[at + len..];
    }
    if !rest.is_empty() {
        parts.push(Part::Text(rest.into()));
    }
    parts
}

/// How a page prints one of its texts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Text {
    /// Escaped; any text, the empty one too.
    Shown,
    /// Escaped, and there only when not empty: the shape bit it names is
    /// set when it is (the page's data shows it only then, and the
    /// template may test it).
    Present(u32),
    /// HTML already (written from another template), printed as it is;
    /// there only when not empty, like [`Text::Present`].
    Html(u32),
}

impl Text {
    /// The shape bit that says the text is there, if it may be absent.
    fn presence(self) -> u32 {
        match self {
            Text::Shown => 0,
            Text::Present(bit) | Text::Html(bit) => bit,
        }
    }
}

/// The parts of one shape; `None` when that shape cannot be taken apart.
type Shape = OnceLock<Option<Box<[Part<usize>]>>>;

/// A page template, taken apart per shape as each shape is first rendered.
pub struct Page<const N: usize> {
    template: &'static str,
    texts: [Text; N],
    /// The page's data for a shape and its texts, as handlebars reads it.
    data: fn(u32, &[&str; N]) -> Value,
    shapes: Box<[Shape]>,
}

impl<const N: usize> Page<N> {
    /// `template`, printing `texts`, with `shape_bits` conditions (shapes
    /// are `0..1 << shape_bits`, the presence bits of `texts` among them),
    /// its data built by `data`.
    pub fn new(
        template: &'static str,
        texts: [Text; N],
        shape_bits: u32,
        data: fn(u32, &[&str; N]) -> Value,
    ) -> Self {
        Page {
            template,
            texts,
            data,
            shapes: (0..1 << shape_bits).map(|_| OnceLock::new()).collect(),
        }
    }

    /// The page for `shape` with `texts`, written at the end of `out`: from
    /// the parts when the shape could be taken apart, else by handlebars.
    /// The presence bits of the shape come from the texts, whatever
    /// `shape` says of them.
    pub fn render_into(
        &self,
        shape: u32,
        texts: &[&str; N],
        out: &mut String,
    ) -> Result<(), RenderError> {
        let shape = self.shape(shape, texts);
        match self.parts(shape) {
            Some(parts) => self.render_parts(parts, texts, out),
            None => out.push_str(&self.render_with_handlebars(shape, texts)?),
        }
        Ok(())
    }

    /// The page for `shape` with `texts`, by handlebars.
    pub fn render_with_handlebars(
        &self,
        shape: u32,
        texts: &[&str; N],
    ) -> Result<String, RenderError> {
        render(self.template, (self.data)(self.shape(shape, texts), texts))
    }

    /// Whether `shape` is rendered from parts (it could be taken apart).
    pub fn is_taken_apart(&self, shape: u32) -> bool {
        self.parts(shape).is_some()
    }

    /// Which texts some shape prints (a text no shape prints is missing
    /// from the page's data or its template).
    #[cfg(test)]
    pub fn printed(&self) -> std::collections::BTreeSet<usize> {
        (0..self.shapes.len() as u32)
            .filter_map(|shape| self.parts(shape))
            .flatten()
            .filter_map(|part| match part {
                Part::Value(i) => Some(*i),
                Part::Text(_) => None,
            })
            .collect()
    }

    /// Every shape `possible` says a page can be asked for is taken apart.
    #[cfg(test)]
    pub fn assert_taken_apart(&self, possible: impl Fn(u32) -> bool) {
        for shape in (0..self.shapes.len() as u32).filter(|&shape| possible(shape)) {
            assert!(
                self.is_taken_apart(shape),
                "{} shape {shape:#b}",
                self.template
            );
        }
    }

    /// The page for `shape` with `texts`, from the parts and by handlebars.
    #[cfg(test)]
    pub fn both(&self, shape: u32, texts: &[String]) -> (String, String) {
        let texts: [&str; N] = std::array::from_fn(|i| texts[i].as_str());
        let mut ours = String::new();
        self.render_into(shape, &texts, &mut ours).unwrap();
        (ours, self.render_with_handlebars(shape, &texts).unwrap())
    }

    /// `shape` with the presence bits of `texts`.
    fn shape(&self, shape: u32, texts: &[&str; N]) -> u32 {
        self.texts
            .iter()
            .zip(texts)
            .fold(shape, |shape, (text, value)| match text.presence() {
                0 => shape,
                bit if value.is_empty() => shape & !bit,
                bit => shape | bit,
            })
    }

    fn parts(&self, shape: u32) -> Option<&[Part<usize>]> {
        self.shapes
            .get(shape as usize)?
            .get_or_init(|| self.take_apart(shape))
            .as_deref()
    }

    fn render_parts(&self, parts: &[Part<usize>], texts: &[&str; N], out: &mut String) {
        let fixed: usize = parts
            .iter()
            .map(|part| match part {
                Part::Text(text) => text.len(),
                Part::Value(_) => 0,
            })
            .sum();
        out.reserve(fixed + texts.iter().map(|text| text.len()).sum::<usize>());
        for part in parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Value(i) => match self.texts[*i] {
                    Text::Html(_) => out.push_str(texts[*i]),
                    Text::Shown | Text::Present(_) => escape_html_into(texts[*i], out),
                },
            }
        }
    }

    /// `shape`'s parts, or `None` when pages rendered from them would differ
    /// from handlebars' on any of the checked texts.
    fn take_apart(&self, shape: u32) -> Option<Box<[Part<usize>]>> {
        // A text the shape says is absent is empty in every rendering.
        let there = |i: usize| {
            let bit = self.texts[i].presence();
            bit == 0 || shape & bit != 0
        };
        // Private-use characters: no markup contains them, and escaping
        // leaves them as they are.
        let probes: [(String, usize); N] = std::array::from_fn(|i| {
            let probe = if there(i) {
                format!("\u{E000}{i}\u{E001}")
            } else {
                String::new()
            };
            (probe, i)
        });
        let probe_texts: [&str; N] = std::array::from_fn(|i| probes[i].0.as_str());
        let rendered = match self.render_with_handlebars(shape, &probe_texts) {
            Ok(rendered) => rendered,
            Err(error) => {
                warn!(template = self.template, shape, %error, "cannot take the template apart: this shape is rendered by handlebars");
                return None;
            }
        };
        let present: Vec<(String, usize)> = probes
            .into_iter()
            .filter(|(probe, _)| !probe.is_empty())
            .collect();
        let parts = split(&rendered, &present);
        // Each text different from the others (a split that mistook one for
        // another shows), with characters that need escaping and template
        // syntax in it; then, for each text that may be empty, the same
        // with it empty (a template that tests it shows).
        let distinct: [String; N] = std::array::from_fn(|i| {
            if there(i) {
                format!(r#"<b id="{i}">"Tom" & 'Jerry' =`{{{{x}}}}`</b>"#)
            } else {
                String::new()
            }
        });
        let mut checks = vec![distinct.clone()];
        for (i, text) in self.texts.iter().enumerate() {
            if *text == Text::Shown {
                let mut check = distinct.clone();
                check[i] = String::new();
                checks.push(check);
            }
        }
        for check in &checks {
            let texts: [&str; N] = std::array::from_fn(|i| check[i].as_str());
            let mut ours = String::new();
            self.render_parts(&parts, &texts, &mut ours);
            match self.render_with_handlebars(shape, &texts) {
                Ok(theirs) if theirs == ours => {}
                Ok(_) => {
                    warn!(
                        template = self.template,
                        shape,
                        "the template does more than print its texts: this shape is rendered by handlebars"
                    );
                    return None;
                }
                Err(error) => {
                    warn!(template = self.template, shape, %error, "cannot check the template taken apart: this shape is rendered by handlebars");
                    return None;
                }
            }
        }
        Some(parts.into_boxed_slice())
    }
}

/// Texts for property tests of taken-apart templates.
#[cfg(test)]
pub mod texts {
    use proptest::prelude::*;

    /// Text with every character the escaping treats, among others, of up
    /// to `max_len - 1` characters (empty one time in `max_len`).
    pub fn markup(max_len: usize) -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop_oneof![
                Just('&'),
                Just('<'),
                Just('>'),
                Just('"'),
                Just('\''),
                Just('='),
                Just('`'),
                Just('{'),
                Just('é'),
                Just('✓'),
                any::<char>(),
                proptest::char::range('a', 'z'),
            ],
            0..max_len,
        )
        .prop_map(|chars| chars.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_template_is_split_where_its_probes_appear() {
        let probes = [("P0".to_owned(), 0), ("P1".to_owned(), 1)];
        assert_eq!(
            split("<a>P1</a>P0P1", &probes),
            [
                Part::Text("<a>".into()),
                Part::Value(1),
                Part::Text("</a>".into()),
                Part::Value(0),
                Part::Value(1),
            ]
        );
    }

    /// `error.hbs` prints its message and title; its status goes in as
    /// a text too.
    fn error_page() -> Page<3> {
        Page::new(
            "error",
            [Text::Shown, Text::Shown, Text::Shown],
            0,
            |_, t| json!({"status": t[0], "title": t[1], "message": t[2]}),
        )
    }

    #[test]
    fn a_page_from_its_parts_is_the_page_handlebars_renders() {
        let page = error_page();
        assert!(page.is_taken_apart(0));
        let texts = ["404", "Not <Found>", "a \"quoted\" & 'odd' message"];
        let mut ours = String::new();
        page.render_into(0, &texts, &mut ours).unwrap();
        assert_eq!(ours, page.render_with_handlebars(0, &texts).unwrap());
    }

    #[test]
    fn a_text_tested_in_a_condition_outside_the_shape_is_refused() {
        // `index.hbs` shows another heading when `searching` is set: a text
        // it tests, which this page does not give as a shape.
        let page: Page<1> = Page::new(
            "index",
            [Text::Shown],
            0,
            |_, t| json!({"searching": t[0], "q": "x", "products": true, "rows": ""}),
        );
        assert!(!page.is_taken_apart(0));
        // Rendered by handlebars instead: still the right page.
        for texts in [[""], ["yes"]] {
            let mut ours = String::new();
            page.render_into(0, &texts, &mut ours).unwrap();
            assert_eq!(ours, page.render_with_handlebars(0, &texts).unwrap());
        }
    }

    #[test]
    fn a_text_shown_in_place_of_an_empty_one_is_refused() {
        // The message falls back to the title when it is empty: with every
        // text the same, or every one empty at once, the split would look
        // right.
        let page: Page<2> = Page::new("error", [Text::Shown, Text::Shown], 0, |_, t| {
            let message = if t[1].is_empty() { t[0] } else { t[1] };
            json!({"status": 500, "title": t[0], "message": message})
        });
        assert!(!page.is_taken_apart(0));
    }

    #[test]
    fn a_present_text_sets_its_bit_whatever_the_shape_given() {
        // `index.hbs` lists its rows (an HTML text) only when there are
        // products: the bit follows the text.
        let page: Page<1> = Page::new(
            "index",
            [Text::Html(1)],
            1,
            |shape, t| json!({"products": shape & 1 != 0, "rows": t[0], "first_page": true}),
        );
        for (shape, rows) in [(0, "<tr></tr>"), (1, ""), (1, "<tr></tr>"), (0, "")] {
            let mut ours = String::new();
            page.render_into(shape, &[rows], &mut ours).unwrap();
            assert_eq!(ours, page.render_with_handlebars(shape, &[rows]).unwrap());
            assert_eq!(ours.contains("No products yet."), rows.is_empty());
        }
        assert!(page.is_taken_apart(0) && page.is_taken_apart(1));
    }

    #[test]
    fn a_text_printed_raw_but_declared_escaped_is_refused() {
        // `index.hbs` prints `rows` raw: declared as escaped, the checks
        // with markup in it differ.
        let page: Page<1> = Page::new(
            "index",
            [Text::Shown],
            0,
            |_, t| json!({"title": "t", "products": true, "rows": t[0]}),
        );
        assert!(!page.is_taken_apart(0));
    }
}
