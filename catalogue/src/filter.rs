//! What a search asks for: the products whose name or manufacturer contains
//! a text, of one manufacturer, within a price range, or any mix of these.
//! The pages and the JSON API read it from the same query parameters
//! (`actors/src/http/params.rs`); persistence turns it into SQL.

/// The shortest text a search takes (shorter ones match too much to page).
pub const MIN_TEXT_CHARS: usize = 3;
/// The longest text a search takes; a longer one is cut.
pub const MAX_TEXT_CHARS: usize = 256;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Contained in the name or in the manufacturer, in any case.
    pub text: Option<String>,
    /// The manufacturer, whole, in any case.
    pub manufacturer: Option<String>,
    /// The lowest price, included.
    pub min_price: Option<i64>,
    /// The highest price, included.
    pub max_price: Option<i64>,
}

impl Filter {
    /// A search for `text` only (the pages' search box).
    pub fn text(text: impl Into<String>) -> Self {
        Self {
            text: Some(text.into()),
            ..Self::default()
        }
    }

    /// Asks for nothing: every product.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// The query parameters that ask for it again (for a next page's link),
    /// unescaped.
    pub fn query(&self) -> Vec<(&'static str, String)> {
        let mut query = Vec::new();
        if let Some(text) = &self.text {
            query.push(("q", text.clone()));
        }
        if let Some(manufacturer) = &self.manufacturer {
            query.push(("manufacturer", manufacturer.clone()));
        }
        if let Some(min) = self.min_price {
            query.push(("min_price", min.to_string()));
        }
        if let Some(max) = self.max_price {
            query.push(("max_price", max.to_string()));
        }
        query
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_filter_asks_for_everything_and_a_full_one_says_each_part() {
        assert!(Filter::default().is_empty());
        let filter = Filter {
            text: Some("pen".into()),
            manufacturer: Some("bic".into()),
            min_price: Some(1),
            max_price: Some(9),
        };
        assert!(!filter.is_empty());
        assert_eq!(
            filter.query(),
            [
                ("q", "pen".to_owned()),
                ("manufacturer", "bic".to_owned()),
                ("min_price", "1".to_owned()),
                ("max_price", "9".to_owned())
            ]
        );
    }
}
