//! [`Strict`]: a serde deserializer proxy under which bincode believes no
//! string or byte-string length prefix.
//!
//! bincode 2 decodes an owned `String` (or byte buffer) by reading its length
//! prefix and allocating that many bytes *before* reading them; its only guard is
//! the configured limit, which counts in-memory sizes and so has to be the 1 GiB
//! ceiling (a limit equal to the payload length would refuse a legit `Vec<u64>`,
//! whose in-memory size is larger than its encoding). So six hostile bytes made it
//! allocate what their prefix claimed.
//!
//! Borrowed strings and bytes are different: bincode takes them from the input
//! slice, which fails when fewer bytes are left than claimed. `Strict` wraps the
//! deserializer at every level (sequences, maps, enums, options, newtypes) and
//! turns each request for an owned string or byte buffer into a request for a
//! borrowed one, handing the visitor an owned copy of exactly the bytes that
//! exist: the visitor sees the same `visit_string` / `visit_byte_buf` call it
//! would have seen. Everything else is forwarded unchanged. Sequences and maps
//! need nothing: serde preallocates them with its cautious size hint (at most
//! about 1 MiB), whatever the prefix claims.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor,
};

/// Wraps a [`Deserializer`], [`DeserializeSeed`], [`SeqAccess`], [`MapAccess`],
/// [`EnumAccess`] or [`VariantAccess`] so that everything reached through it is
/// wrapped too.
pub(crate) struct Strict<T>(T);

/// The seed that deserializes a `T` under `Strict`.
pub(crate) fn seed<T>() -> Strict<PhantomData<T>> {
    Strict(PhantomData)
}

/// A visitor reached through [`Strict`]; with `owned`, a borrowed string or
/// byte string is delivered as the owned one that was asked for.
struct Wrap<V> {
    inner: V,
    owned: bool,
}

impl<V> Wrap<V> {
    fn new(inner: V) -> Self {
        Self {
            inner,
            owned: false,
        }
    }

    fn owned(inner: V) -> Self {
        Self { inner, owned: true }
    }
}

macro_rules! forward_deserialize {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {$(
        #[inline]
        fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, D::Error> {
            self.0.$method($($arg,)* Wrap::new(visitor))
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Strict<D> {
    type Error = D::Error;

    forward_deserialize! {
        deserialize_any();
        deserialize_bool();
        deserialize_i8();
        deserialize_i16();
        deserialize_i32();
        deserialize_i64();
        deserialize_i128();
        deserialize_u8();
        deserialize_u16();
        deserialize_u32();
        deserialize_u64();
        deserialize_u128();
        deserialize_f32();
        deserialize_f64();
        deserialize_char();
        deserialize_str();
        deserialize_bytes();
        deserialize_option();
        deserialize_unit();
        deserialize_unit_struct(name: &'static str);
        deserialize_newtype_struct(name: &'static str);
        deserialize_seq();
        deserialize_tuple(len: usize);
        deserialize_tuple_struct(name: &'static str, len: usize);
        deserialize_map();
        deserialize_struct(name: &'static str, fields: &'static [&'static str]);
        deserialize_enum(name: &'static str, variants: &'static [&'static str]);
        deserialize_identifier();
        deserialize_ignored_any();
    }

    #[inline]
    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_str(Wrap::owned(visitor))
    }

    #[inline]
    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_bytes(Wrap::owned(visitor))
    }

    fn is_human_readable(&self) -> bool {
        self.0.is_human_readable()
    }
}

macro_rules! forward_visit {
    ($($method:ident($ty:ty);)*) => {$(
        #[inline]
        fn $method<E: de::Error>(self, v: $ty) -> Result<V::Value, E> {
            self.inner.$method(v)
        }
    )*};
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Wrap<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.expecting(f)
    }

    forward_visit! {
        visit_bool(bool);
        visit_i8(i8);
        visit_i16(i16);
        visit_i32(i32);
        visit_i64(i64);
        visit_i128(i128);
        visit_u8(u8);
        visit_u16(u16);
        visit_u32(u32);
        visit_u64(u64);
        visit_u128(u128);
        visit_f32(f32);
        visit_f64(f64);
        visit_char(char);
        visit_string(String);
        visit_byte_buf(Vec<u8>);
    }

    #[inline]
    fn visit_str<E: de::Error>(self, v: &str) -> Result<V::Value, E> {
        if self.owned {
            self.inner.visit_string(v.to_owned())
        } else {
            self.inner.visit_str(v)
        }
    }

    #[inline]
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<V::Value, E> {
        if self.owned {
            self.inner.visit_string(v.to_owned())
        } else {
            self.inner.visit_borrowed_str(v)
        }
    }

    #[inline]
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<V::Value, E> {
        if self.owned {
            self.inner.visit_byte_buf(v.to_vec())
        } else {
            self.inner.visit_bytes(v)
        }
    }

    #[inline]
    fn visit_borrowed_bytes<E: de::Error>(self, v: &'de [u8]) -> Result<V::Value, E> {
        if self.owned {
            self.inner.visit_byte_buf(v.to_vec())
        } else {
            self.inner.visit_borrowed_bytes(v)
        }
    }

    #[inline]
    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_none()
    }

    #[inline]
    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_unit()
    }

    #[inline]
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        self.inner.visit_some(Strict(d))
    }

    #[inline]
    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        self.inner.visit_newtype_struct(Strict(d))
    }

    #[inline]
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        self.inner.visit_seq(Strict(seq))
    }

    #[inline]
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.inner.visit_map(Strict(map))
    }

    #[inline]
    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        self.inner.visit_enum(Strict(data))
    }
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Strict<S> {
    type Value = S::Value;

    #[inline]
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<S::Value, D::Error> {
        self.0.deserialize(Strict(d))
    }
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Strict<A> {
    type Error = A::Error;

    #[inline]
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        self.0.next_element_seed(Strict(seed))
    }

    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Strict<A> {
    type Error = A::Error;

    #[inline]
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        self.0.next_key_seed(Strict(seed))
    }

    #[inline]
    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, A::Error> {
        self.0.next_value_seed(Strict(seed))
    }

    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

impl<'de, A: EnumAccess<'de>> EnumAccess<'de> for Strict<A> {
    type Error = A::Error;
    type Variant = Strict<A::Variant>;

    #[inline]
    fn variant_seed<S: DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<(S::Value, Self::Variant), A::Error> {
        let (value, variant) = self.0.variant_seed(Strict(seed))?;
        Ok((value, Strict(variant)))
    }
}

impl<'de, A: VariantAccess<'de>> VariantAccess<'de> for Strict<A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), A::Error> {
        self.0.unit_variant()
    }

    #[inline]
    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, A::Error> {
        self.0.newtype_variant_seed(Strict(seed))
    }

    #[inline]
    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        self.0.tuple_variant(len, Wrap::new(visitor))
    }

    #[inline]
    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        self.0.struct_variant(fields, Wrap::new(visitor))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};

    use crate::persistence::Codec;

    fn bincode<T: serde::Serialize>(value: &T) -> Vec<u8> {
        bincode::serde::encode_to_vec(value, bincode::config::standard()).unwrap()
    }

    /// Every shape serde has, through every level of nesting the proxy wraps.
    #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Everything {
        unit: (),
        signed: (bool, char, i8, i16, i32, i64, i128),
        unsigned: (u8, u16, u32, u64, u128, f32, f64),
        name: String,
        boxed: Box<str>,
        option: Option<String>,
        nested: Vec<Vec<String>>,
        map: BTreeMap<String, Vec<String>>,
        hash: HashMap<u8, String>,
        newtype: Name,
        tuple: TupleStruct,
        unit_struct: UnitStruct,
        kinds: Vec<Kind>,
        #[serde(with = "bytes")]
        raw: Vec<u8>,
        id: uuid::Uuid,
    }

    #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Name(String);
    #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
    struct TupleStruct(String, u8);
    #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
    struct UnitStruct;

    #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
    enum Kind {
        Unit,
        Newtype(String),
        Tuple(String, Option<String>),
        Struct { label: String },
    }

    /// `serialize_bytes` / `deserialize_byte_buf`, as serde_bytes does it.
    mod bytes {
        pub fn serialize<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(v)
        }

        pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
            struct Buf;
            impl serde::de::Visitor<'_> for Buf {
                type Value = Vec<u8>;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("a byte buffer")
                }
                // Only the owned form, as a visitor that wants ownership might.
                fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                    Ok(v)
                }
            }
            d.deserialize_byte_buf(Buf)
        }
    }

    fn everything() -> Everything {
        Everything {
            unit: (),
            signed: (true, 'λ', -1, -2, -3, -4, -5),
            unsigned: (1, 2, 3, 4, 5, 1.5, -2.5),
            name: "ada ✓".into(),
            boxed: "boxed".into(),
            option: Some("some".into()),
            nested: vec![vec![], vec!["a".into(), "bb".into()]],
            map: BTreeMap::from([("k".into(), vec!["v".into()])]),
            hash: HashMap::from([(7, "seven".into())]),
            newtype: Name("newtype".into()),
            tuple: TupleStruct("tuple".into(), 9),
            unit_struct: UnitStruct,
            kinds: vec![
                Kind::Unit,
                Kind::Newtype("n".into()),
                Kind::Tuple("t".into(), None),
                Kind::Struct { label: "s".into() },
            ],
            raw: vec![0, 255, 7],
            id: uuid::Uuid::from_u128(0x1234),
        }
    }

    #[test]
    fn the_proxy_decodes_what_plain_bincode_encodes() {
        let bytes = bincode(&everything());
        let back: Everything = Codec::Bincode.decode(&bytes).unwrap();
        assert_eq!(back, everything());
        let (plain, _): (Everything, usize) =
            bincode::serde::decode_from_slice(&bytes, bincode::config::standard()).unwrap();
        assert_eq!(plain, back);
    }

    #[test]
    fn a_string_longer_than_the_input_is_refused() {
        // Varint 0xfd + u64: a string of 64 MiB, then three bytes.
        let mut bytes = vec![0xfd];
        bytes.extend_from_slice(&(64u64 << 20).to_le_bytes());
        bytes.extend_from_slice(b"ada");
        assert!(Codec::Bincode.decode::<String>(&bytes).is_err());
        assert!(Codec::Bincode.decode::<Name>(&bytes).is_err());
        assert!(
            Codec::Bincode
                .decode::<Option<String>>(&[&[1][..], &bytes].concat())
                .is_err()
        );
        // Exactly the bytes present is fine.
        let mut exact = vec![3];
        exact.extend_from_slice(b"ada");
        assert_eq!(Codec::Bincode.decode::<String>(&exact).unwrap(), "ada");
    }
}
