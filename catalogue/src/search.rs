//! The search index: what a [`Filter`] looks at (each product's name and
//! manufacturer, lower-cased, and its price) for every product, in blocks of
//! [`BLOCK_IDS`] ids, kept in memory so that searching needs no index in
//! Postgres (whose upkeep cost every write a quarter of its time).
//!
//! Pure code, no I/O. A block's texts are one buffer: for each product its
//! name, a `0xFF` byte, its manufacturer, a `0xFF` byte. A search's text
//! (UTF-8, which never holds `0xFF`) is looked for in the whole buffer at
//! once (`memchr::memmem`), so a match never spans two fields.
//!
//! Like a [`crate::block::Block`], a block keeps for each id the version with
//! the higher revision, deletions included (as tombstones), so versions may
//! arrive in any order; [`SearchIndex::replace`] takes a block read whole.
//!
//! It matches as Postgres's search does (`lower(name) LIKE '%text%'`): a
//! text contained in the name or the manufacturer, both lower-cased one
//! character at a time, as Postgres's `lower()` does ([`lowercase`]: no
//! rule that looks at a letter's neighbours, such as a final sigma).

use crate::block::{block_of, ids_of};
use crate::feed::Version;
use crate::filter::Filter;
use memchr::memmem;
use std::collections::BTreeMap;

/// Where a field ends in a block's buffer.
const END: u8 = 0xFF;
/// An entry's `split` when it is a tombstone.
const DELETED: u32 = u32::MAX;

/// Every product's searchable fields, by block.
#[derive(Debug, Default)]
pub struct SearchIndex {
    blocks: BTreeMap<i64, SearchBlock>,
}

/// What one call of [`SearchIndex::search`] found.
#[derive(Debug, PartialEq)]
pub struct Found {
    /// The ids asked for, in id order.
    pub ids: Vec<i64>,
    /// It stopped at its bound of blocks before finding `limit`: the search
    /// goes on after this id.
    pub resume_after: Option<i64>,
}

/// One block's products: their fields in id order, their texts in one buffer.
#[derive(Debug, Default, Clone, PartialEq)]
struct SearchBlock {
    entries: Box<[Entry]>,
    /// `name 0xFF manufacturer 0xFF` for each product not deleted, in the
    /// entries' order.
    text: Box<[u8]>,
}

/// 32 bytes: an id, its revision, its price, and where its texts are.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Entry {
    id: i64,
    revision: i64,
    price: i64,
    /// Where its name ends (its `0xFF`); [`DELETED`] for a tombstone.
    split: u32,
    /// Where the next entry's texts start (its own start is the previous
    /// entry's `next`, or 0).
    next: u32,
}

impl Entry {
    fn deleted(&self) -> bool {
        self.split == DELETED
    }
}

impl SearchIndex {
    /// Applies `versions` (any ids, any order) where they are newer than what
    /// the index holds.
    pub fn merge(&mut self, versions: &[Version]) {
        let mut by_block: BTreeMap<i64, Vec<&Version>> = BTreeMap::new();
        for version in versions {
            by_block
                .entry(block_of(version.id()))
                .or_default()
                .push(version);
        }
        for (key, versions) in by_block {
            let block = self.blocks.entry(key).or_default();
            if let Some(merged) = block.merged(versions) {
                *block = merged;
            }
        }
    }

    /// The block `key` holds exactly `versions` (read whole from Postgres):
    /// an id it held that they leave out is gone.
    pub fn replace(&mut self, key: i64, versions: &[Version]) {
        let versions: Vec<&Version> = versions
            .iter()
            .filter(|version| block_of(version.id()) == key)
            .collect();
        match SearchBlock::default().merged(versions) {
            Some(block) => self.blocks.insert(key, block),
            None => self.blocks.remove(&key),
        };
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        self.blocks.clear();
    }

    /// Up to `limit` ids greater than `after`, in id order, of the products
    /// `matcher` asks for, looking at `blocks` blocks at most. A caller that
    /// holds a lock on the index takes it again before going on from
    /// [`Found::resume_after`], so that searching the whole catalogue never
    /// holds it long.
    pub fn search(&self, matcher: &Matcher, after: i64, limit: usize, blocks: usize) -> Found {
        let mut found = Found {
            ids: Vec::new(),
            resume_after: None,
        };
        let after_blocks = self.blocks.range(block_of(after.saturating_add(1))..);
        for (looked, (&key, block)) in after_blocks.enumerate() {
            if found.ids.len() >= limit {
                break;
            }
            if looked == blocks {
                found.resume_after = Some(ids_of(key).0 - 1);
                break;
            }
            block.search(matcher, after, limit, &mut found.ids);
        }
        found
    }
}

/// A [`Filter`] made ready to match: its texts lower-cased, its text's
/// search compiled once.
pub struct Matcher {
    text: Option<memmem::Finder<'static>>,
    manufacturer: Option<Vec<u8>>,
    min_price: i64,
    max_price: i64,
}

impl Matcher {
    pub fn new(filter: &Filter) -> Self {
        Self {
            text: filter
                .text
                .as_ref()
                .filter(|text| !text.is_empty())
                .map(|text| memmem::Finder::new(lowercase(text).as_bytes()).into_owned()),
            manufacturer: filter
                .manufacturer
                .as_ref()
                .map(|manufacturer| lowercase(manufacturer).into_bytes()),
            min_price: filter.min_price.unwrap_or(i64::MIN),
            max_price: filter.max_price.unwrap_or(i64::MAX),
        }
    }

    /// Whether a product with these fields (in any case) is asked for.
    pub fn matches(&self, name: &str, manufacturer: &str, price: i64) -> bool {
        let name = lowercase(name);
        let manufacturer = lowercase(manufacturer);
        self.matches_besides_text(manufacturer.as_bytes(), price)
            && self.text.as_ref().is_none_or(|finder| {
                finder.find(name.as_bytes()).is_some()
                    || finder.find(manufacturer.as_bytes()).is_some()
            })
    }

    /// The manufacturer (lower-cased) and the price.
    fn matches_besides_text(&self, manufacturer: &[u8], price: i64) -> bool {
        (self.min_price..=self.max_price).contains(&price)
            && self
                .manufacturer
                .as_deref()
                .is_none_or(|wanted| wanted == manufacturer)
    }
}

impl SearchBlock {
    /// This block with `versions` (of its ids) applied where they are newer
    /// than what it holds (`None`: none was).
    fn merged(&self, mut versions: Vec<&Version>) -> Option<SearchBlock> {
        versions.sort_by_key(|v| (v.id(), std::cmp::Reverse(v.revision())));
        versions.dedup_by_key(|v| v.id());
        versions.retain(|v| {
            self.entry(v.id())
                .is_none_or(|old| v.revision() > old.revision)
        });
        if versions.is_empty() {
            return None;
        }
        let mut builder = Builder::default();
        let mut new = versions.into_iter().peekable();
        for (index, old) in self.entries.iter().enumerate() {
            while let Some(version) = new.next_if(|v| v.id() < old.id) {
                builder.push_version(version);
            }
            match new.next_if(|v| v.id() == old.id) {
                Some(version) => builder.push_version(version),
                None => builder.push_entry(old, self.texts(index)),
            }
        }
        for version in new {
            builder.push_version(version);
        }
        Some(builder.finish())
    }

    fn entry(&self, id: i64) -> Option<&Entry> {
        self.entries
            .binary_search_by_key(&id, |entry| entry.id)
            .ok()
            .map(|at| &self.entries[at])
    }

    /// The entry `index`'s bytes in the buffer (empty for a tombstone).
    fn texts(&self, index: usize) -> &[u8] {
        let start = index
            .checked_sub(1)
            .map_or(0, |previous| self.entries[previous].next);
        &self.text[start as usize..self.entries[index].next as usize]
    }

    /// Pushes onto `found` the ids after `after` that `matcher` asks for, in
    /// id order, until it holds `limit`.
    fn search(&self, matcher: &Matcher, after: i64, limit: usize, found: &mut Vec<i64>) {
        let first = self.entries.partition_point(|entry| entry.id <= after);
        match &matcher.text {
            None => {
                for index in first..self.entries.len() {
                    if found.len() >= limit {
                        return;
                    }
                    self.take(index, matcher, found);
                }
            }
            Some(finder) => {
                // Each match, to the entry whose texts hold it: once per
                // entry, in order.
                let mut last = None;
                for at in finder.find_iter(&self.text) {
                    let index = self
                        .entries
                        .partition_point(|entry| entry.next as usize <= at);
                    if index < first || last == Some(index) {
                        continue;
                    }
                    if found.len() >= limit {
                        return;
                    }
                    last = Some(index);
                    self.take(index, matcher, found);
                }
            }
        }
    }

    /// Pushes the entry `index`'s id onto `found` if it is a product that
    /// `matcher`'s conditions besides its text ask for.
    fn take(&self, index: usize, matcher: &Matcher, found: &mut Vec<i64>) {
        let entry = &self.entries[index];
        if entry.deleted() {
            return;
        }
        let manufacturer = &self.text[entry.split as usize + 1..entry.next as usize - 1];
        if matcher.matches_besides_text(manufacturer, entry.price) {
            found.push(entry.id);
        }
    }
}

/// `text` lower-cased one character at a time (`char::to_lowercase`), as
/// Postgres's `lower()` does: "ΟΔΟΣ" is "οδοσ", where `str::to_lowercase`
/// would end it with "ς".
pub fn lowercase(text: &str) -> String {
    let mut lowered = Vec::with_capacity(text.len());
    push_lowercase(&mut lowered, text);
    String::from_utf8(lowered).expect("lower-cased characters are UTF-8")
}

/// Pushes `text` lower-cased (as [`lowercase`]) onto `bytes`; ASCII without
/// a second pass over it.
fn push_lowercase(bytes: &mut Vec<u8>, text: &str) {
    if text.is_ascii() {
        bytes.extend(text.bytes().map(|b| b.to_ascii_lowercase()));
        return;
    }
    let mut utf8 = [0; 4];
    for c in text.chars().flat_map(char::to_lowercase) {
        bytes.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
    }
}

#[derive(Default)]
struct Builder {
    entries: Vec<Entry>,
    text: Vec<u8>,
}

impl Builder {
    fn push_version(&mut self, version: &Version) {
        let (id, revision, price, split) = match version {
            Version::Stored(product) => {
                push_lowercase(&mut self.text, &product.name);
                let split = self.offset();
                self.text.push(END);
                push_lowercase(&mut self.text, &product.manufacturer);
                self.text.push(END);
                (product.id, product.revision, product.price, split)
            }
            Version::Deleted { id, revision } => (*id, *revision, 0, DELETED),
        };
        let next = self.offset();
        self.entries.push(Entry {
            id,
            revision,
            price,
            split,
            next,
        });
    }

    /// An entry kept as it was, with its bytes (`texts`).
    fn push_entry(&mut self, entry: &Entry, texts: &[u8]) {
        let start = self.offset();
        self.text.extend_from_slice(texts);
        let moved = |at: u32| at - (entry.next - texts.len() as u32) + start;
        self.entries.push(Entry {
            split: if entry.deleted() {
                DELETED
            } else {
                moved(entry.split)
            },
            next: self.offset(),
            ..*entry
        });
    }

    fn offset(&self) -> u32 {
        u32::try_from(self.text.len()).expect("a block's texts fit in 4 GiB")
    }

    /// The block, with no spare capacity kept (the index holds every block).
    fn finish(self) -> SearchBlock {
        SearchBlock {
            entries: self.entries.into_boxed_slice(),
            text: self.text.into_boxed_slice(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::product::Product;
    use proptest::prelude::*;
    use std::sync::Arc;

    fn product(id: i64, revision: i64, name: &str, manufacturer: &str, price: i64) -> Version {
        Version::Stored(Arc::new(Product {
            id,
            revision,
            name: name.into(),
            manufacturer: manufacturer.into(),
            price,
            description: None,
            attributes: Default::default(),
            stream_seq: 0,
            updated_at: String::new(),
            changed_by: None,
        }))
    }

    fn all(index: &SearchIndex, filter: &Filter) -> Vec<i64> {
        index
            .search(&Matcher::new(filter), 0, usize::MAX, usize::MAX)
            .ids
    }

    #[test]
    fn a_text_is_found_in_the_name_or_the_manufacturer_in_any_case_never_across_them() {
        let mut index = SearchIndex::default();
        index.merge(&[
            product(1, 1, "Desk Lamp", "Acme", 10),
            product(2, 1, "pen", "LAMPWORKS", 20),
            product(3, 1, "la", "mp", 30),
            product(70, 1, "floor lamp", "acme", 40),
        ]);
        assert_eq!(all(&index, &Filter::text("lamp")), [1, 2, 70]);
        assert_eq!(all(&index, &Filter::text("AMP")), [1, 2, 70]);
        // 3's "la" and "mp" are two fields: no match across them.
        let acme = Filter {
            manufacturer: Some("ACME".into()),
            ..Filter::default()
        };
        assert_eq!(all(&index, &acme), [1, 70]);
        let priced = Filter {
            text: Some("lamp".into()),
            min_price: Some(15),
            max_price: Some(40),
            ..Filter::default()
        };
        assert_eq!(all(&index, &priced), [2, 70]);
    }

    #[test]
    fn letters_are_lower_cased_one_at_a_time_as_postgres_does() {
        assert_eq!(lowercase("ΟΔΟΣ Straße ÉCLAIR"), "οδοσ straße éclair");
        let mut index = SearchIndex::default();
        index.merge(&[product(1, 1, "ΟΔΟΣ", "m", 1)]);
        assert_eq!(all(&index, &Filter::text("οδοσ")), [1]);
        assert_eq!(all(&index, &Filter::text("ΟΔΟΣ")), [1]);
    }

    #[test]
    fn a_newer_version_wins_whatever_the_order_and_a_deletion_is_kept_as_one() {
        let mut index = SearchIndex::default();
        index.merge(&[product(5, 3, "new name", "m", 1)]);
        index.merge(&[product(5, 2, "old name", "m", 1)]);
        assert_eq!(all(&index, &Filter::text("new")), [5]);
        assert_eq!(all(&index, &Filter::text("old")), [] as [i64; 0]);
        index.merge(&[Version::Deleted { id: 5, revision: 4 }]);
        assert_eq!(all(&index, &Filter::text("new")), [] as [i64; 0]);
        // An older write arriving after the deletion does not bring it back.
        index.merge(&[product(5, 3, "new name", "m", 1)]);
        assert_eq!(all(&index, &Filter::text("name")), [] as [i64; 0]);
        index.merge(&[product(5, 5, "back again", "m", 1)]);
        assert_eq!(all(&index, &Filter::text("back")), [5]);
    }

    #[test]
    fn a_block_read_whole_replaces_what_was_held_and_a_cleared_index_holds_nothing() {
        let mut index = SearchIndex::default();
        index.merge(&[product(1, 1, "kept", "m", 1), product(2, 1, "gone", "m", 1)]);
        index.replace(0, &[product(1, 1, "kept", "m", 1)]);
        assert_eq!(all(&index, &Filter::text("m")), [1]);
        index.replace(0, &[]);
        assert_eq!(all(&index, &Filter::text("m")), [] as [i64; 0]);
        index.merge(&[product(1, 1, "kept", "m", 1)]);
        index.clear();
        assert_eq!(all(&index, &Filter::default()), [] as [i64; 0]);
    }

    #[test]
    fn a_search_bounded_in_blocks_says_where_to_go_on_and_finds_the_rest_from_there() {
        let mut index = SearchIndex::default();
        let versions: Vec<Version> = (1..=640)
            .map(|id| product(id, 1, &format!("item {id}"), "m", id))
            .collect();
        index.merge(&versions);
        let matcher = Matcher::new(&Filter::text("item 6"));
        let first = index.search(&matcher, 0, 1000, 2);
        // Blocks 0 and 1 (ids 0..=127): 6 and 60..=69.
        assert_eq!(first.ids, [6, 60, 61, 62, 63, 64, 65, 66, 67, 68, 69]);
        assert_eq!(first.resume_after, Some(127));
        let rest = index.search(&matcher, 127, 1000, usize::MAX);
        assert_eq!(rest.ids.first(), Some(&600));
        assert_eq!(rest.resume_after, None);
        // A limit reached stops it, with nothing to go on from.
        let limited = index.search(&matcher, 0, 3, 2);
        assert_eq!(limited.ids, [6, 60, 61]);
        assert_eq!(limited.resume_after, None);
    }

    /// One step of a history of writes.
    #[derive(Debug, Clone)]
    enum Step {
        Write {
            id: i64,
            name: String,
            manufacturer: String,
            price: i64,
        },
        Delete {
            id: i64,
        },
        /// A version written earlier arrives again, late.
        Late {
            from: usize,
        },
    }

    /// A few manufacturers, so that a search for one finds some.
    const MANUFACTURERS: &str = "(Acme|ACME|acme |Bic|b)";

    fn step() -> impl Strategy<Value = Step> {
        // Few ids (two blocks' worth and a bit), short names from few
        // letters: ids are rewritten and texts match often.
        let text = "[aAbB ]{0,6}";
        prop_oneof![
            5 => (0..150_i64, text, MANUFACTURERS, 0..10_i64).prop_map(|(id, name, manufacturer, price)| {
                Step::Write { id, name, manufacturer, price }
            }),
            2 => (0..150_i64).prop_map(|id| Step::Delete { id }),
            1 => (0..1000_usize).prop_map(|from| Step::Late { from }),
        ]
    }

    proptest! {
        /// Whatever the writes, deletions and late arrivals, a search finds
        /// exactly what a scan of each id's newest version finds, in id
        /// order, and a search bounded in blocks, resumed, finds the same.
        #[test]
        fn a_search_finds_exactly_the_newest_versions_that_match(
            steps in prop::collection::vec(step(), 1..80),
            text in prop::option::of("[aAbB]{1,2}"),
            manufacturer in prop::option::of(MANUFACTURERS),
            max_price in prop::option::of(0..10_i64),
            after in 0..150_i64,
            limit in 1..40_usize,
        ) {
            let mut index = SearchIndex::default();
            let mut sent: Vec<Version> = Vec::new();
            let mut newest: BTreeMap<i64, Version> = BTreeMap::new();
            for (revision, step) in (1..).zip(steps) {
                let versions = match step {
                    Step::Write { id, name, manufacturer, price } => {
                        vec![product(id, revision, &name, &manufacturer, price)]
                    }
                    Step::Delete { id } => vec![Version::Deleted { id, revision }],
                    Step::Late { from } => sent.get(from % sent.len().max(1)).cloned().into_iter().collect(),
                };
                for version in &versions {
                    if newest.get(&version.id()).is_none_or(|kept| kept.revision() < version.revision()) {
                        newest.insert(version.id(), version.clone());
                    }
                }
                index.merge(&versions);
                sent.extend(versions);
            }
            // What Postgres's search asks, said again with `str`'s own
            // methods (the generated texts are ASCII).
            let wanted = |p: &Product| {
                text.as_ref().is_none_or(|text| {
                    let text = text.to_ascii_lowercase();
                    p.name.to_ascii_lowercase().contains(&text)
                        || p.manufacturer.to_ascii_lowercase().contains(&text)
                }) && manufacturer
                    .as_ref()
                    .is_none_or(|m| m.eq_ignore_ascii_case(&p.manufacturer))
                    && max_price.is_none_or(|max| p.price <= max)
            };
            let expected: Vec<i64> = newest
                .values()
                .filter_map(|version| match version {
                    Version::Stored(p) if p.id > after && wanted(p) => Some(p.id),
                    _ => None,
                })
                .take(limit)
                .collect();
            let filter = Filter { text, manufacturer, min_price: None, max_price };
            let matcher = Matcher::new(&filter);
            prop_assert_eq!(&index.search(&matcher, after, limit, usize::MAX).ids, &expected);
            let mut resumed = Vec::new();
            let mut from = after;
            loop {
                let found = index.search(&matcher, from, limit - resumed.len(), 1);
                resumed.extend(found.ids);
                match found.resume_after {
                    Some(next) if resumed.len() < limit => from = next,
                    _ => break,
                }
            }
            prop_assert_eq!(resumed, expected);
        }
    }
}
