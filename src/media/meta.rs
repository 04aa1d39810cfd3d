//! `onMetaData`: the AMF0 data message that tells a player what a stream holds.

use std::collections::HashMap;

use rml_amf0::Amf0Value;

use super::MediaError;
use crate::pages::{Message, StreamWriter};

/// The AMF0 encoding of the string "onMetaData" (marker 2, length 10).
const ON_METADATA: &[u8] = b"\x02\x00\x0aonMetaData";
/// The AMF0 encoding of the string "@setDataFrame" (marker 2, length 13).
const SET_DATA_FRAME: &[u8] = b"\x02\x00\x0d@setDataFrame";

/// Stream properties for `onMetaData`, as a file or camera source knows them. `None` fields
/// are left out.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StreamMetadata {
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub framerate: Option<f64>,
    /// FLV video codec id (7 = AVC).
    pub video_codec_id: Option<u8>,
    /// Video bit rate in kbit/s.
    pub video_data_rate: Option<f64>,
    /// FLV sound format (10 = AAC).
    pub audio_codec_id: Option<u8>,
    pub audio_sample_rate: Option<u32>,
    pub audio_channels: Option<u8>,
    /// Audio bit rate in kbit/s.
    pub audio_data_rate: Option<f64>,
    /// What made the stream ("moment file source").
    pub encoder: Option<String>,
}

impl StreamMetadata {
    /// The AMF0 data message body: the string "onMetaData" then an object of properties.
    pub fn to_amf0(&self) -> Result<Vec<u8>, MediaError> {
        let mut props = HashMap::new();
        let mut num = |k: &str, v: Option<f64>| {
            if let Some(v) = v {
                props.insert(k.to_owned(), Amf0Value::Number(v));
            }
        };
        num("width", self.width.map(f64::from));
        num("height", self.height.map(f64::from));
        num("framerate", self.framerate);
        num("videocodecid", self.video_codec_id.map(f64::from));
        num("videodatarate", self.video_data_rate);
        num("audiocodecid", self.audio_codec_id.map(f64::from));
        num("audiosamplerate", self.audio_sample_rate.map(f64::from));
        num("audiodatarate", self.audio_data_rate);
        num("duration", Some(0.0));
        if let Some(ch) = self.audio_channels {
            props.insert("audiochannels".to_owned(), Amf0Value::Number(f64::from(ch)));
            props.insert("stereo".to_owned(), Amf0Value::Boolean(ch == 2));
        }
        if let Some(e) = &self.encoder {
            props.insert("encoder".to_owned(), Amf0Value::Utf8String(e.clone()));
        }
        let values = vec![
            Amf0Value::Utf8String("onMetaData".to_owned()),
            Amf0Value::Object(props),
        ];
        rml_amf0::serialize(&values).map_err(|e| MediaError::Amf0(e.to_string()))
    }
}

/// Writes the `onMetaData` body into the stream's pages.
pub fn metadata_body(w: &mut StreamWriter, meta: &StreamMetadata) -> Result<Message, MediaError> {
    let bytes = meta.to_amf0()?;
    w.write(&[&bytes])
        .map_err(|e| MediaError::Amf0(format!("page budget: {e}")))
}

/// True if an AMF0 data body starts with the string "onMetaData".
pub fn is_on_metadata(body: &[u8]) -> bool {
    body.starts_with(ON_METADATA)
}

/// A publisher's `@setDataFrame("onMetaData", {..})` minus its first string, which is what
/// players get; `None` if the body does not start with "@setDataFrame".
pub fn strip_set_data_frame(body: &[u8]) -> Option<&[u8]> {
    body.strip_prefix(SET_DATA_FRAME)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_round_trips_through_amf0() {
        let meta = StreamMetadata {
            width: Some(640),
            height: Some(360),
            framerate: Some(25.0),
            video_codec_id: Some(7),
            audio_codec_id: Some(10),
            audio_sample_rate: Some(48000),
            audio_channels: Some(2),
            encoder: Some("moment".into()),
            ..StreamMetadata::default()
        };
        let bytes = meta.to_amf0().unwrap();
        assert!(is_on_metadata(&bytes));
        let values = rml_amf0::deserialize(&mut &bytes[..]).unwrap();
        assert_eq!(values[0], Amf0Value::Utf8String("onMetaData".into()));
        let props = values[1].clone().get_object_properties().unwrap();
        assert_eq!(props["width"], Amf0Value::Number(640.0));
        assert_eq!(props["videocodecid"], Amf0Value::Number(7.0));
        assert_eq!(props["audiocodecid"], Amf0Value::Number(10.0));
        assert_eq!(props["stereo"], Amf0Value::Boolean(true));
    }

    #[test]
    fn set_data_frame_is_stripped() {
        let mut body = SET_DATA_FRAME.to_vec();
        body.extend_from_slice(ON_METADATA);
        assert!(is_on_metadata(strip_set_data_frame(&body).unwrap()));
        assert!(strip_set_data_frame(ON_METADATA).is_none());
    }
}
