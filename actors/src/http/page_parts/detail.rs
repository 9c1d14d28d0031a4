//! The product detail page (`GET /product?id=N`, `views/product.hbs`):
//! what it prints and the conditions it tests.

use super::{HEAD_BITS, HEAD_TEXTS, Head, OPERATOR, SIGNED_IN, head_data};
use crate::http::views::taken_apart::{Page, Text};
use crate::http::views::thousands;
use handlebars::RenderError;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::borrow::Cow;
use std::sync::LazyLock;

/// What the page shows besides the product.
pub struct Around<'a> {
    pub head: Head<'a>,
    /// The delete form's message id (operators only).
    pub message_id: &'a str,
}

/// The page for `product` (its JSON as the cache holds and the API serves
/// it), or `None` if the JSON is not a product's.
pub fn render(product: &[u8], around: &Around) -> Option<Result<String, RenderError>> {
    let product: Shown = serde_json::from_slice(product).ok()?;
    let mut attributes = String::new();
    for (name, value) in &product.attributes {
        let value = match value {
            Value::String(text) => Cow::Borrowed(text.as_str()),
            other => Cow::Owned(other.to_string()),
        };
        if let Err(error) = ATTRIBUTE.render_into(0, &[name, &value], &mut attributes) {
            return Some(Err(error));
        }
    }
    let (id, price, stream_seq) = (
        product.id.to_string(),
        thousands(product.price),
        product.stream_seq.to_string(),
    );
    let updated_at = shown_time(&product.updated_at);
    let description = product.description.as_deref().unwrap_or_default();
    let changed_by = product.changed_by.as_deref().unwrap_or_default();
    let (shape, head) = around.head.parts();
    let mut texts = [""; TEXTS];
    texts[..HEAD_TEXTS].copy_from_slice(&head);
    texts[NAME] = &product.name;
    texts[ID] = &id;
    texts[PRICE] = &price;
    texts[MANUFACTURER] = &product.manufacturer;
    texts[DESCRIPTION] = description;
    texts[UPDATED_AT] = &updated_at;
    texts[STREAM_SEQ] = &stream_seq;
    texts[CHANGED_BY] = changed_by;
    texts[ATTRIBUTES] = &attributes;
    texts[MESSAGE_ID] = around.message_id;
    let mut page = String::new();
    let rendered = PAGE.render_into(shape, &texts, &mut page);
    Some(rendered.map(|()| page))
}

/// The product's fields the page shows, read from its JSON.
#[derive(Deserialize)]
struct Shown<'a> {
    id: i64,
    #[serde(borrow)]
    name: Cow<'a, str>,
    price: i64,
    #[serde(borrow)]
    manufacturer: Cow<'a, str>,
    #[serde(default, borrow)]
    description: Option<Cow<'a, str>>,
    #[serde(default)]
    attributes: Map<String, Value>,
    stream_seq: i64,
    #[serde(borrow)]
    updated_at: Cow<'a, str>,
    #[serde(default, borrow)]
    changed_by: Option<Cow<'a, str>>,
}

// The page's texts after the head's, by their place in the array `PAGE`
// is given.
const NAME: usize = HEAD_TEXTS;
const ID: usize = HEAD_TEXTS + 1;
const PRICE: usize = HEAD_TEXTS + 2;
const MANUFACTURER: usize = HEAD_TEXTS + 3;
const DESCRIPTION: usize = HEAD_TEXTS + 4;
const UPDATED_AT: usize = HEAD_TEXTS + 5;
const STREAM_SEQ: usize = HEAD_TEXTS + 6;
const CHANGED_BY: usize = HEAD_TEXTS + 7;
const ATTRIBUTES: usize = HEAD_TEXTS + 8;
const MESSAGE_ID: usize = HEAD_TEXTS + 9;
const TEXTS: usize = HEAD_TEXTS + 10;

// The conditions the page tests, after the head's: its shape.
const HAS_DESCRIPTION: u32 = 1 << HEAD_BITS;
const HAS_CHANGED_BY: u32 = 1 << (HEAD_BITS + 1);
const HAS_ATTRIBUTES: u32 = 1 << (HEAD_BITS + 2);
const SHAPE_BITS: u32 = HEAD_BITS + 3;

static PAGE: LazyLock<Page<TEXTS>> = LazyLock::new(|| {
    let mut texts = [Text::Shown; TEXTS];
    texts[OPERATOR] = Text::Present(SIGNED_IN);
    texts[DESCRIPTION] = Text::Present(HAS_DESCRIPTION);
    texts[CHANGED_BY] = Text::Present(HAS_CHANGED_BY);
    texts[ATTRIBUTES] = Text::Html(HAS_ATTRIBUTES);
    Page::new("product", texts, SHAPE_BITS, page_data)
});

/// One row of the attributes table: its name and its value.
static ATTRIBUTE: LazyLock<Page<2>> = LazyLock::new(|| {
    Page::new(
        "attribute_row",
        [Text::Shown; 2],
        0,
        |_, t| json!({"name": t[0], "value": t[1]}),
    )
});

/// The data `product.hbs` reads, for a shape and the page's texts.
fn page_data(shape: u32, t: &[&str; TEXTS]) -> Value {
    let when = |bit: u32, value: Value| if shape & bit != 0 { value } else { Value::Null };
    let signed_in = shape & SIGNED_IN != 0;
    let mut data = json!({
        "product": {
            "id": t[ID],
            "name": t[NAME],
            "manufacturer": t[MANUFACTURER],
            "description": when(HAS_DESCRIPTION, t[DESCRIPTION].into()),
            "changed_by": when(HAS_CHANGED_BY, t[CHANGED_BY].into()),
        },
        "price": t[PRICE],
        "updated_at": t[UPDATED_AT],
        "stream_seq": t[STREAM_SEQ],
        "attributes": when(HAS_ATTRIBUTES, t[ATTRIBUTES].into()),
        "manage": signed_in,
        "csrf": when(SIGNED_IN, t[super::CSRF].into()),
        "message_id": when(SIGNED_IN, t[MESSAGE_ID].into()),
    });
    head_data(&mut data, shape, t);
    data
}

/// A stored time (RFC 3339 in UTC, as the JSON serves it) as the pages show
/// it: `2026-11-26 00:12:03 UTC` (`views/static/live.js` writes it the same way).
fn shown_time(rfc3339: &str) -> String {
    match rfc3339.split_once('T') {
        Some((date, time)) => {
            let time = time.trim_end_matches('Z');
            let seconds = time.split_once('.').map_or(time, |(whole, _)| whole);
            format!("{date} {seconds} UTC")
        }
        None => rfc3339.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::page_parts::{Visitor, possible};
    use crate::http::views::taken_apart::texts::markup;
    use proptest::prelude::*;

    #[test]
    fn a_stored_time_is_shown_to_the_second_in_utc() {
        assert_eq!(
            shown_time("2026-11-26T00:12:03.123456Z"),
            "2026-11-26 00:12:03 UTC"
        );
        assert_eq!(
            shown_time("2026-11-26T00:12:03Z"),
            "2026-11-26 00:12:03 UTC"
        );
    }

    #[test]
    fn every_shape_of_the_page_is_taken_apart() {
        PAGE.assert_taken_apart(possible);
        ATTRIBUTE.assert_taken_apart(|_| true);
    }

    #[test]
    fn every_text_is_printed() {
        assert_eq!(PAGE.printed(), (0..TEXTS).collect());
        assert_eq!(ATTRIBUTE.printed(), (0..2).collect());
    }

    /// Text with every character the escaping treats, among others.
    fn text() -> impl Strategy<Value = String> {
        markup(6)
    }

    proptest! {
        #[test]
        fn a_page_from_the_parts_is_the_page_handlebars_renders(
            shape in (0u32..1 << SHAPE_BITS).prop_filter("possible", |&shape| possible(shape)),
            texts in proptest::collection::vec(text(), TEXTS),
        ) {
            let (ours, theirs) = PAGE.both(shape, &texts);
            prop_assert!(PAGE.is_taken_apart(shape));
            prop_assert_eq!(ours, theirs);
        }
    }

    #[test]
    fn the_page_shows_the_product_and_escapes_it() {
        let json = serde_json::to_vec(&json!({
            "id": 7, "name": "<Cup>", "price": 1234567, "manufacturer": "A & B",
            "attributes": {"colour": "red", "size": 3},
            "stream_seq": 42, "updated_at": "2026-11-26T00:12:03.123Z",
        }))
        .unwrap();
        let around = Around {
            head: Head {
                position: "812.7",
                visitor: Visitor::MaySignIn,
                paused: None,
            },
            message_id: "",
        };
        let page = render(&json, &around).unwrap().unwrap();
        for shown in [
            "<h1>&lt;Cup&gt;</h1>",
            r#"data-field="price">1,234,567</dd>"#,
            r#"data-field="manufacturer">A &amp; B</dd>"#,
            r#"<span class="none">none</span>"#,
            "2026-11-26 00:12:03 UTC",
            r#"<tr><th scope="row">colour</th><td>red</td></tr>"#,
            r#"<tr><th scope="row">size</th><td>3</td></tr>"#,
            r#"data-position="812.7""#,
            r#"href="/signin""#,
        ] {
            assert!(page.contains(shown), "{shown} not in {page}");
        }
        assert!(!page.contains("/manage/delete"), "{page}");
        assert!(render(b"{}", &around).is_none());
    }
}
