//! Text as search compares it: a query and the posts it is looked for in are folded the
//! same way, so full-width and half-width forms, and upper and lower case, match.

use unicode_normalization::UnicodeNormalization;

/// Text as search compares it: NFKC, lower case.
pub fn fold(text: &str) -> String {
    text.nfkc().flat_map(char::to_lowercase).collect()
}

#[cfg(test)]
mod tests {
    use super::fold;

    #[test]
    fn full_and_half_width_forms_fold_together() {
        assert_eq!(fold("血圧１２８／８０"), "血圧128/80");
        assert_eq!(fold("ｶﾞｰｾﾞ交換"), "ガーゼ交換");
        assert_eq!(fold("ＳｐＯ２ 95%"), "spo2 95%");
        assert_eq!(fold("㍉"), "ミリ");
    }

    #[test]
    fn plain_text_is_unchanged() {
        assert_eq!(fold("褥瘡の処置をしました"), "褥瘡の処置をしました");
    }
}
