//! The pages served most, written from their templates taken apart
//! (`views/taken_apart.rs`) instead of by handlebars on every request: the
//! product list (`list.rs`, `views/index.hbs`) and a product's detail
//! (`detail.rs`, `views/product.hbs`). Each lists what its template prints
//! (its texts) and the conditions it tests (its shape).
//!
//! To show something new on one of them, say a product's weight on the
//! detail page:
//! 1. print it in the template: `<dd>{{weight}}</dd>`;
//! 2. in `detail.rs`, give it a place (`const WEIGHT: usize = …`, and
//!    `TEXTS` one more), put it in the page's data (`"weight": t[WEIGHT]`
//!    in `page_data`) and set it in `render` (`texts[WEIGHT] = &weight`);
//! 3. if the template shows it only when there is one
//!    (`{{#if weight}}…{{/if}}`), it is `Text::Present(HAS_WEIGHT)`, a new
//!    shape bit, shown in the data only when that bit is set; a condition
//!    on something that is not a text (like `searching`) is a bit the
//!    page's `render` sets.
//!
//! A text forgotten in the data or the template fails the page's
//! `every_text_is_printed` test; a text tested in a condition the shape
//! does not capture fails `every_shape_of_the_page_is_taken_apart` (and, if
//! it slipped through, the page would still be right: that shape would be
//! rendered by handlebars).
//!
//! Both start with the head (`views/head.hbs`): its texts come first in
//! each page's texts, and its conditions are each page's lowest shape bits.

pub mod detail;
pub mod list;

use serde_json::{Value, json};

/// Who is looking at the page, as the head and the forms show it.
pub enum Visitor<'a> {
    /// No operators are configured: nobody signs in.
    Reader,
    /// Operators are configured; this visitor is not signed in.
    MaySignIn,
    /// A signed-in operator, and the token their forms carry.
    Operator { name: &'a str, csrf: &'a str },
}

/// What the head of a live page shows.
pub struct Head<'a> {
    /// Where the page's live updates start (empty: from when it opens the stream).
    pub position: &'a str,
    pub visitor: Visitor<'a>,
    /// Since when and why ingest is paused, if it is.
    pub paused: Option<(&'a str, &'a str)>,
}

// The head's texts, the first of every page's.
const POSITION: usize = 0;
const OPERATOR: usize = 1;
const CSRF: usize = 2;
const PAUSED_SINCE: usize = 3;
const PAUSED_WHY: usize = 4;
const HEAD_TEXTS: usize = 5;

// The head's conditions, the lowest bits of every page's shape.
const SIGNED_IN: u32 = 1;
const MAY_SIGN_IN: u32 = 1 << 1;
const PAUSED: u32 = 1 << 2;
const HEAD_BITS: u32 = 3;

impl<'a> Head<'a> {
    /// The head's shape bits, and its texts.
    fn parts(&self) -> (u32, [&'a str; HEAD_TEXTS]) {
        let (operator, csrf, bit) = match self.visitor {
            Visitor::Operator { name, csrf } => (name, csrf, SIGNED_IN),
            Visitor::MaySignIn => ("", "", MAY_SIGN_IN),
            Visitor::Reader => ("", "", 0),
        };
        let (since, why) = self.paused.unwrap_or_default();
        let paused = if self.paused.is_some() { PAUSED } else { 0 };
        (bit | paused, [self.position, operator, csrf, since, why])
    }
}

/// The head's values in a page's data, from the page's shape and texts.
fn head_data(data: &mut Value, shape: u32, t: &[&str]) {
    data["who"] = if shape & SIGNED_IN != 0 {
        json!({"operator": t[OPERATOR], "csrf": t[CSRF]})
    } else if shape & MAY_SIGN_IN != 0 {
        json!({"sign_in": true})
    } else {
        json!({})
    };
    data["paused"] = if shape & PAUSED != 0 {
        json!({"since": t[PAUSED_SINCE], "why": t[PAUSED_WHY]})
    } else {
        Value::Null
    };
    data["position"] = t[POSITION].into();
}

/// Whether a page's `shape` is one it can be asked for (an operator is
/// never also asked to sign in).
#[cfg(test)]
fn possible(shape: u32) -> bool {
    shape & SIGNED_IN == 0 || shape & MAY_SIGN_IN == 0
}
