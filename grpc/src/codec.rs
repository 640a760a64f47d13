//! A tonic codec that passes a `coprocess.Object` through as bytes.
//!
//! The library validates the Object's wire bytes itself (as strictly as prost), reads fields
//! lazily and answers with bytes, often by copying the input and appending edits. Decoding the
//! Object into prost types here and encoding it again for the library would double that work,
//! so `Dispatch` hands the request body to [`coprocess::Runtime::dispatch`] untouched and
//! sends its answer back the same way. The gRPC frame is split off tonic's receive buffer
//! without a copy.

use bytes::{Buf, BufMut, Bytes};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::Status;

/// A serialised `coprocess.Object`, not decoded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawObject(pub Bytes);

impl From<Vec<u8>> for RawObject {
    fn from(v: Vec<u8>) -> Self {
        RawObject(Bytes::from(v))
    }
}

/// The pass-through codec of `Dispatch` (both directions).
#[derive(Debug, Clone, Copy, Default)]
pub struct RawCodec;

/// Writes the bytes as they are.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawEncoder;

/// Takes the whole message as bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawDecoder;

impl Codec for RawCodec {
    type Encode = RawObject;
    type Decode = RawObject;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        RawEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawDecoder
    }
}

impl Encoder for RawEncoder {
    type Item = RawObject;
    type Error = Status;

    fn encode(&mut self, item: Self::Item, dst: &mut EncodeBuf<'_>) -> Result<(), Self::Error> {
        dst.put_slice(&item.0);
        Ok(())
    }
}

impl Decoder for RawDecoder {
    type Item = RawObject;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Self::Error> {
        Ok(Some(RawObject(src.copy_to_bytes(src.remaining()))))
    }
}
