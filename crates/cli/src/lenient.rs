//! A clap value parser for the closed sets whose library parser accepts more spellings than the
//! canonical names (`No-Think` for `nothink`): `--help` lists the canonical names (from
//! `ValueEnum`), parsing goes through `FromStr`, and its error message is shown as it is.

use clap::builder::{PossibleValue, TypedValueParser};
use clap::error::ErrorKind;
use clap::ValueEnum;
use std::marker::PhantomData;
use std::str::FromStr;

#[derive(Clone)]
pub struct Lenient<E>(PhantomData<E>);

pub fn lenient<E>() -> Lenient<E> {
    Lenient(PhantomData)
}

impl<E> TypedValueParser for Lenient<E>
where
    E: ValueEnum + FromStr<Err = String> + Clone + Send + Sync + 'static,
{
    type Value = E;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<E, clap::Error> {
        let s = value.to_str().ok_or_else(|| clap::Error::new(ErrorKind::InvalidUtf8).with_cmd(cmd))?;
        s.parse().map_err(|e: String| clap::Error::raw(ErrorKind::InvalidValue, format!("{e}\n")).with_cmd(cmd))
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        Some(Box::new(E::value_variants().iter().filter_map(|v| v.to_possible_value())))
    }
}
