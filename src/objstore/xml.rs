//! The two XML bodies an S3 server sends pecd: a ListObjectsV2 page
//! (`ListBucketResult`) and an error (`Error`). Pure.

use quick_xml::events::Event;
use quick_xml::Reader;

use super::ObjectInfo;

/// Every element of a document as it closes, in document order: its path
/// of local names from the root, `/`-joined (`ListBucketResult/Contents/Key`),
/// with its text if it has no child elements, None if it has some.
fn elements(xml: &[u8]) -> Result<Vec<(String, Option<String>)>, quick_xml::Error> {
    let mut reader = Reader::from_reader(xml);
    // Open elements: name, and whether a child element was seen.
    let mut stack: Vec<(String, bool)> = Vec::new();
    let mut text = String::new();
    let mut out = Vec::new();
    let path = |stack: &[(String, bool)], last: &str| {
        let mut p: Vec<&str> = stack.iter().map(|(n, _)| n.as_str()).collect();
        p.push(last);
        p.join("/")
    };
    loop {
        match reader.read_event()? {
            Event::Start(e) => {
                if let Some(parent) = stack.last_mut() {
                    parent.1 = true;
                }
                stack.push((
                    String::from_utf8_lossy(e.local_name().as_ref()).into_owned(),
                    false,
                ));
                text.clear();
            }
            Event::Empty(e) => {
                if let Some(parent) = stack.last_mut() {
                    parent.1 = true;
                }
                let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                out.push((path(&stack, &name), Some(String::new())));
            }
            Event::Text(t) => text.push_str(&t.decode()?),
            Event::CData(t) => text.push_str(&String::from_utf8_lossy(&t)),
            Event::GeneralRef(r) => {
                if let Ok(Some(c)) = r.resolve_char_ref() {
                    text.push(c);
                } else if let Some(v) = quick_xml::escape::resolve_predefined_entity(&r.decode()?) {
                    text.push_str(v);
                }
            }
            Event::End(_) => {
                if let Some((name, had_child)) = stack.pop() {
                    let p = path(&stack, &name);
                    let t = std::mem::take(&mut text);
                    out.push((p, (!had_child).then_some(t)));
                }
            }
            Event::Eof => return Ok(out),
            _ => {}
        }
    }
}

/// The parts of an S3 error reply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorBody {
    /// `Code`: `NoSuchBucket`, `SignatureDoesNotMatch`, …
    pub code: String,
    /// `Message`: the server's sentence.
    pub message: String,
}

/// The code and message of an `<Error>` body; None if the body is not one.
pub fn error(body: &[u8]) -> Option<ErrorBody> {
    let leaves = elements(body).ok()?;
    let mut e = ErrorBody::default();
    let mut seen = false;
    for (path, text) in leaves {
        let Some(text) = text else { continue };
        match path.as_str() {
            "Error/Code" => {
                e.code = text;
                seen = true;
            }
            "Error/Message" => e.message = text,
            _ => {}
        }
    }
    seen.then_some(e)
}

/// One page of a ListObjectsV2 reply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListPage {
    /// The objects of this page, in key order.
    pub objects: Vec<ObjectInfo>,
    /// The token for the next page; None on the last.
    pub next: Option<String>,
}

/// Why a ListObjectsV2 body was not understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListError {
    /// Not well-formed XML.
    Xml(String),
    /// Not a `ListBucketResult`.
    NotAList,
    /// An entry without a key, or with a size or date not understood.
    BadEntry(String),
    /// Truncated but without a `NextContinuationToken`.
    NoToken,
}

impl std::fmt::Display for ListError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListError::Xml(e) => write!(f, "not XML: {e}"),
            ListError::NotAList => f.write_str("not a ListBucketResult"),
            ListError::BadEntry(what) => write!(f, "an entry not understood: {what}"),
            ListError::NoToken => f.write_str("truncated without a NextContinuationToken"),
        }
    }
}

impl std::error::Error for ListError {}

/// Parse a `ListBucketResult` (ListObjectsV2).
pub fn list(body: &[u8]) -> Result<ListPage, ListError> {
    let leaves = elements(body).map_err(|e| ListError::Xml(e.to_string()))?;
    if !leaves
        .iter()
        .any(|(p, _)| p == "ListBucketResult" || p.starts_with("ListBucketResult/"))
    {
        return Err(ListError::NotAList);
    }
    let mut page = ListPage::default();
    let mut truncated = false;
    let (mut key, mut size, mut modified, mut etag) = (None, None, None, String::new());
    for (path, text) in leaves {
        match (path.as_str(), text) {
            ("ListBucketResult/Contents", None) => {
                let key = key.take().ok_or(ListError::BadEntry("no Key".into()))?;
                let size_text: String = size.take().unwrap_or_default();
                let size = size_text
                    .parse()
                    .map_err(|_| ListError::BadEntry(format!("{key}: Size {size_text:?}")))?;
                let when: String = modified.take().unwrap_or_default();
                let last_modified = iso8601_unix(&when)
                    .ok_or_else(|| ListError::BadEntry(format!("{key}: LastModified {when:?}")))?;
                page.objects.push(ObjectInfo {
                    key,
                    size,
                    last_modified,
                    etag: std::mem::take(&mut etag),
                });
            }
            ("ListBucketResult/Contents/Key", Some(t)) => key = Some(t),
            ("ListBucketResult/Contents/Size", Some(t)) => size = Some(t),
            ("ListBucketResult/Contents/LastModified", Some(t)) => modified = Some(t),
            ("ListBucketResult/Contents/ETag", Some(t)) => etag = t.trim_matches('"').to_string(),
            ("ListBucketResult/IsTruncated", Some(t)) => truncated = t.trim() == "true",
            ("ListBucketResult/NextContinuationToken", Some(t)) if !t.is_empty() => {
                page.next = Some(t)
            }
            _ => {}
        }
    }
    if !truncated {
        page.next = None;
    } else if page.next.is_none() {
        return Err(ListError::NoToken);
    }
    Ok(page)
}

/// Unix seconds of `2009-10-12T17:50:30.000Z` (fraction and `Z` optional).
pub fn iso8601_unix(s: &str) -> Option<i64> {
    let s = s.trim();
    let b = s.as_bytes();
    if b.len() < 19
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        t.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| t.parse().ok())?
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let rest = &s[19..];
    let rest = match rest.strip_prefix('.') {
        Some(r) => r.trim_start_matches(|c: char| c.is_ascii_digit()),
        None => rest,
    };
    if !(rest.is_empty() || rest == "Z" || rest == "+00:00") {
        return None;
    }
    let days = crate::pec::clock::days_from_civil(y, mo as u32, d as u32);
    Some(days * 86_400 + h * 3600 + mi * 60 + sec)
}

/// Unix seconds of an HTTP date (`Fri, 24 May 2013 00:00:00 GMT`, RFC 9110's
/// IMF-fixdate, the form S3 sends in `Last-Modified`).
pub fn http_date_unix(s: &str) -> Option<i64> {
    let mut it = s.split_whitespace();
    let _weekday = it.next()?;
    let d: u32 = it.next()?.parse().ok()?;
    let mon = it.next()?;
    let y: i64 = it.next()?.parse().ok()?;
    let hms = it.next()?;
    if it.next()? != "GMT" {
        return None;
    }
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let mo = MONTHS.iter().position(|m| *m == mon)? as u32 + 1;
    iso8601_unix(&format!("{y:04}-{mo:02}-{d:02}T{hms}Z"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_truncated_page_gives_its_objects_and_the_token() {
        let body = br#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Name>pecd</Name><Prefix>ab/</Prefix><KeyCount>2</KeyCount><MaxKeys>2</MaxKeys>
  <IsTruncated>true</IsTruncated>
  <Contents><Key>ab/cd/1</Key><LastModified>2013-05-24T00:00:01.000Z</LastModified>
    <ETag>&quot;d41d8cd98f00b204e9800998ecf8427e&quot;</ETag><Size>0</Size><StorageClass>STANDARD</StorageClass></Contents>
  <Contents><Key>ab/cd/a&amp;b</Key><LastModified>2013-05-24T00:00:02Z</LastModified>
    <ETag>"x"</ETag><Size>5000000</Size></Contents>
  <NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken>
</ListBucketResult>"#;
        let page = list(body).unwrap();
        assert_eq!(
            page.objects,
            vec![
                ObjectInfo {
                    key: "ab/cd/1".into(),
                    size: 0,
                    last_modified: 1_369_353_601,
                    etag: "d41d8cd98f00b204e9800998ecf8427e".into(),
                },
                ObjectInfo {
                    key: "ab/cd/a&b".into(),
                    size: 5_000_000,
                    last_modified: 1_369_353_602,
                    etag: "x".into(),
                },
            ]
        );
        assert_eq!(
            page.next.as_deref(),
            Some("1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=")
        );
    }

    #[test]
    fn the_last_page_and_an_empty_one_have_no_token() {
        let page = list(b"<ListBucketResult><IsTruncated>false</IsTruncated><NextContinuationToken>t</NextContinuationToken></ListBucketResult>").unwrap();
        assert_eq!(page, ListPage::default());
        let page =
            list(b"<ListBucketResult><Name>pecd</Name><KeyCount>0</KeyCount></ListBucketResult>")
                .unwrap();
        assert_eq!(page, ListPage::default());
    }

    #[test]
    fn bodies_that_are_not_a_list_are_refused() {
        assert_eq!(
            list(b"<Error><Code>X</Code></Error>"),
            Err(ListError::NotAList)
        );
        assert!(matches!(
            list(b"<ListBucketResult><a></b>"),
            Err(ListError::Xml(_))
        ));
        assert_eq!(
            list(b"<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>"),
            Err(ListError::NoToken)
        );
        assert!(matches!(
            list(b"<ListBucketResult><Contents><Key>k</Key><Size>-1</Size><LastModified>2013-05-24T00:00:02Z</LastModified></Contents></ListBucketResult>"),
            Err(ListError::BadEntry(_))
        ));
    }

    #[test]
    fn an_error_body_gives_code_and_message() {
        let body = br#"<?xml version="1.0" encoding="UTF-8"?>
<Error><Code>NoSuchBucket</Code><Message>The specified bucket does not exist</Message><BucketName>nope</BucketName><RequestId>r</RequestId></Error>"#;
        assert_eq!(
            error(body),
            Some(ErrorBody {
                code: "NoSuchBucket".into(),
                message: "The specified bucket does not exist".into()
            })
        );
        assert_eq!(error(b""), None);
        assert_eq!(error(b"<html>bad gateway</html>"), None);
    }

    #[test]
    fn dates_of_lists_and_headers() {
        assert_eq!(
            iso8601_unix("2013-05-24T00:00:00.000Z"),
            Some(1_369_353_600)
        );
        assert_eq!(iso8601_unix("2013-05-24T00:00:00Z"), Some(1_369_353_600));
        assert_eq!(iso8601_unix("2013-05-24 00:00:00"), None);
        assert_eq!(iso8601_unix("2013-13-24T00:00:00Z"), None);
        assert_eq!(
            http_date_unix("Fri, 24 May 2013 00:00:00 GMT"),
            Some(1_369_353_600)
        );
        assert_eq!(http_date_unix("Fri, 24 Mai 2013 00:00:00 GMT"), None);
    }
}
