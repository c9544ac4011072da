//! The codec of every service identityd generates: prost, except that a request that
//! does not decode (broken wire format, a string field that is not UTF-8) is the
//! caller's fault, INVALID_ARGUMENT. tonic's own prost codec answers INTERNAL, which
//! callers, retry policies and Envoy's ext_authz filter count as identityd failing.

use super::status::ERROR_DOMAIN;
use prost::Message;
use std::marker::PhantomData;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic::{Code, Status};
use tonic_prost::ProstEncoder;
use tonic_types::{ErrorDetails, StatusExt};

/// prost encoding, with decode failures answered as INVALID_ARGUMENT.
#[derive(Debug, Clone)]
pub struct StrictCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for StrictCodec<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T, U> Codec for StrictCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = StrictDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        StrictDecoder(PhantomData)
    }
}

/// Decodes a `U`; see [`StrictCodec`].
#[derive(Debug, Clone)]
pub struct StrictDecoder<U>(PhantomData<U>);

impl<U: Message + Default> Decoder for StrictDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        // prost's error names the field and the wire problem, never the bytes.
        U::decode(buf).map(Some).map_err(|e| {
            Status::with_error_details(
                Code::InvalidArgument,
                e.to_string(),
                ErrorDetails::with_error_info("malformed_request", ERROR_DOMAIN, []),
            )
        })
    }

    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::default()
    }
}
