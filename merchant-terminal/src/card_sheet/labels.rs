//! The card's fixed wording, per language.

/// A language the cards are translated into.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Language {
    /// English.
    En,
    /// Spanish.
    Es,
    /// Greek.
    El,
    /// Arabic, laid out right to left.
    Ar,
    /// Portuguese.
    Pt,
    /// French.
    Fr,
}

/// The fixed wording printed on a card.
pub(crate) struct Labels {
    /// Above the card number.
    pub card_number: &'static str,
    /// Under the QR code, across the card.
    pub pay_local: &'static str,
    /// At the foot of the card.
    pub pin_warning: &'static str,
}

impl Language {
    /// The language of a BCP 47 tag, by its primary subtag in any case (`ar-MA` is Arabic);
    /// `None` for a language the cards are not translated into.
    pub fn from_tag(tag: &str) -> Option<Self> {
        let primary = tag.split(['-', '_']).next().unwrap_or_default();
        let language = match primary.to_ascii_lowercase().as_str() {
            "en" => Self::En,
            "es" => Self::Es,
            "el" => Self::El,
            "ar" => Self::Ar,
            "pt" => Self::Pt,
            "fr" => Self::Fr,
            _ => return None,
        };
        Some(language)
    }

    /// The primary subtag, as written in `xml:lang` and given to the shaper.
    pub fn tag(self) -> &'static str {
        match self {
            Self::En => "en",
            Self::Es => "es",
            Self::El => "el",
            Self::Ar => "ar",
            Self::Pt => "pt",
            Self::Fr => "fr",
        }
    }

    /// Whether the language is written right to left.
    pub fn is_rtl(self) -> bool {
        self == Self::Ar
    }

    pub(crate) fn labels(self) -> &'static Labels {
        match self {
            Self::En => &EN,
            Self::Es => &ES,
            Self::El => &EL,
            Self::Ar => &AR,
            Self::Pt => &PT,
            Self::Fr => &FR,
        }
    }
}

const EN: Labels = Labels {
    card_number: "Card number",
    pay_local: "Pay only at registered local shops",
    pin_warning: "Keep your PIN secret. Never write it on the card.",
};

const ES: Labels = Labels {
    card_number: "Número de tarjeta",
    pay_local: "Paga solo en comercios locales adheridos",
    pin_warning: "Mantén tu PIN en secreto. No lo escribas nunca en la tarjeta.",
};

const EL: Labels = Labels {
    card_number: "Αριθμός κάρτας",
    pay_local: "Πληρώνετε μόνο σε εγγεγραμμένα τοπικά καταστήματα",
    pin_warning: "Κρατήστε το PIN σας μυστικό. Μην το γράφετε ποτέ πάνω στην κάρτα.",
};

const AR: Labels = Labels {
    card_number: "رقم البطاقة",
    pay_local: "ادفع فقط في المتاجر المحلية المسجّلة",
    pin_warning: "احتفظ برقمك السري لنفسك. لا تكتبه أبدًا على البطاقة.",
};

const PT: Labels = Labels {
    card_number: "Número do cartão",
    pay_local: "Pague apenas no comércio local aderente",
    pin_warning: "Mantenha o seu PIN secreto. Nunca o escreva no cartão.",
};

const FR: Labels = Labels {
    card_number: "Numéro de carte",
    pay_local: "Payez uniquement chez les commerçants locaux partenaires",
    pin_warning: "Gardez votre code PIN secret. Ne l’écrivez jamais sur la carte.",
};
