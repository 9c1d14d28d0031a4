//! The product list (`GET /`, with `?q=` a search; `views/index.hbs`): what
//! it prints and the conditions it tests. Its rows come written already
//! (`http/rows.rs`).

use super::{HEAD_BITS, HEAD_TEXTS, Head, OPERATOR, SIGNED_IN, head_data};
use crate::http::views::taken_apart::{Page, Text};
use crate::http::views::thousands;
use handlebars::RenderError;
use serde_json::{Value, json};
use std::sync::LazyLock;

/// One page of the list.
pub struct List<'a> {
    pub head: Head<'a>,
    /// What is searched for; empty: the whole list.
    pub q: &'a str,
    /// How many products there are (the whole list only, once known).
    pub count: Option<u64>,
    /// The id the page starts after.
    pub after: i64,
    /// The last id the page covers, when it is full (new products past it
    /// are on a later page).
    pub until: Option<i64>,
    /// The page's rows (`product_row.hbs`'s HTML); empty: no products.
    pub rows: &'a str,
    /// The links to the pages before and after, if any.
    pub previous: Option<&'a str>,
    pub next: Option<&'a str>,
    /// The link to the first page.
    pub first: &'a str,
}

/// The page.
pub fn render(list: &List) -> Result<String, RenderError> {
    let (mut shape, head) = list.head.parts();
    let count = list
        .count
        .map(|count| thousands(count.try_into().unwrap_or(i64::MAX)));
    let (after, until) = (
        list.after.to_string(),
        list.until.map(|until| until.to_string()),
    );
    for (bit, holds) in [
        (SEARCHING, !list.q.is_empty()),
        (FIRST_PAGE, list.after == 0),
    ] {
        if holds {
            shape |= bit;
        }
    }
    let mut texts = [""; TEXTS];
    texts[..HEAD_TEXTS].copy_from_slice(&head);
    texts[Q] = list.q;
    texts[COUNT] = count.as_deref().unwrap_or_default();
    texts[AFTER] = &after;
    texts[UNTIL] = until.as_deref().unwrap_or_default();
    texts[ROWS] = list.rows;
    texts[PREVIOUS] = list.previous.unwrap_or_default();
    texts[NEXT] = list.next.unwrap_or_default();
    texts[FIRST] = list.first;
    let mut page = String::new();
    PAGE.render_into(shape, &texts, &mut page)?;
    Ok(page)
}

// The page's texts after the head's, by their place in the array `PAGE`
// is given.
const Q: usize = HEAD_TEXTS;
const COUNT: usize = HEAD_TEXTS + 1;
const AFTER: usize = HEAD_TEXTS + 2;
const UNTIL: usize = HEAD_TEXTS + 3;
const ROWS: usize = HEAD_TEXTS + 4;
const PREVIOUS: usize = HEAD_TEXTS + 5;
const NEXT: usize = HEAD_TEXTS + 6;
const FIRST: usize = HEAD_TEXTS + 7;
const TEXTS: usize = HEAD_TEXTS + 8;

// The conditions the page tests, after the head's: its shape.
const SEARCHING: u32 = 1 << HEAD_BITS;
const HAS_COUNT: u32 = 1 << (HEAD_BITS + 1);
const HAS_PRODUCTS: u32 = 1 << (HEAD_BITS + 2);
const FIRST_PAGE: u32 = 1 << (HEAD_BITS + 3);
const HAS_PREVIOUS: u32 = 1 << (HEAD_BITS + 4);
const HAS_NEXT: u32 = 1 << (HEAD_BITS + 5);
const SHAPE_BITS: u32 = HEAD_BITS + 6;

static PAGE: LazyLock<Page<TEXTS>> = LazyLock::new(|| {
    let mut texts = [Text::Shown; TEXTS];
    texts[OPERATOR] = Text::Present(SIGNED_IN);
    texts[COUNT] = Text::Present(HAS_COUNT);
    texts[PREVIOUS] = Text::Present(HAS_PREVIOUS);
    texts[NEXT] = Text::Present(HAS_NEXT);
    texts[ROWS] = Text::Html(HAS_PRODUCTS);
    Page::new("index", texts, SHAPE_BITS, page_data)
});

/// The data `index.hbs` reads, for a shape and the page's texts.
fn page_data(shape: u32, t: &[&str; TEXTS]) -> Value {
    let when = |bit: u32, value: &str| {
        if shape & bit != 0 {
            Value::from(value)
        } else {
            Value::Null
        }
    };
    let mut data = json!({
        "products": shape & HAS_PRODUCTS != 0,
        "next": when(HAS_NEXT, t[NEXT]),
        "previous": when(HAS_PREVIOUS, t[PREVIOUS]),
        "first_page": shape & FIRST_PAGE != 0,
        "count": when(HAS_COUNT, t[COUNT]),
        "q": t[Q],
        "searching": shape & SEARCHING != 0,
        "after": t[AFTER],
        "until": t[UNTIL],
        "rows": when(HAS_PRODUCTS, t[ROWS]),
        "first": t[FIRST],
    });
    head_data(&mut data, shape, t);
    data
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::page_parts::{Visitor, possible};
    use crate::http::views::taken_apart::texts::markup;
    use proptest::prelude::*;

    #[test]
    fn every_shape_of_the_page_is_taken_apart() {
        PAGE.assert_taken_apart(possible);
    }

    #[test]
    fn every_text_is_printed() {
        assert_eq!(PAGE.printed(), (0..TEXTS).collect());
    }

    proptest! {
        #[test]
        fn a_page_from_the_parts_is_the_page_handlebars_renders(
            shape in (0u32..1 << SHAPE_BITS).prop_filter("possible", |&shape| possible(shape)),
            texts in proptest::collection::vec(markup(6), TEXTS),
        ) {
            let (ours, theirs) = PAGE.both(shape, &texts);
            prop_assert!(PAGE.is_taken_apart(shape));
            prop_assert_eq!(ours, theirs);
        }
    }

    #[test]
    fn the_list_shows_its_count_rows_and_links_and_escapes_the_search() {
        let list = List {
            head: Head {
                position: "9.1",
                visitor: Visitor::Operator {
                    name: "ada",
                    csrf: "tok",
                },
                paused: None,
            },
            q: "<b>&",
            count: None,
            after: 100,
            until: Some(200),
            rows: "<tr data-id=\"101\"></tr>",
            previous: Some("/?after=0&limit=100"),
            next: None,
            first: "/?q=%3Cb%3E%26",
        };
        let page = render(&list).unwrap();
        for shown in [
            "Products matching “&lt;b&gt;&amp;”",
            r#"data-after="100" data-until="200" data-search="true">"#,
            "<tr data-id=\"101\"></tr>",
            r#"<a href="/?after=0&amp;limit=100" rel="prev">"#,
            "<strong>ada</strong>",
            r#"<a href="/?q=%3Cb%3E%26">First page</a>"#,
        ] {
            assert!(page.contains(shown), "{shown} not in {page}");
        }
        assert!(!page.contains("rel=\"next\""), "{page}");
        let whole = List {
            q: "",
            count: Some(1234567),
            after: 0,
            rows: "",
            previous: None,
            ..list
        };
        let page = render(&whole).unwrap();
        assert!(
            page.contains(r#"<span id="count">1,234,567</span>"#),
            "{page}"
        );
        assert!(page.contains("No products yet."), "{page}");
    }
}
