//! A minimal ISO-BMFF / QuickTime writer. Sample payloads are filler: only the container
//! structure matters to the probe.

pub fn boxed(kind: &[u8; 4], payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 8);
    out.extend_from_slice(&(payload.len() as u32 + 8).to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(payload);
    out
}

/// A box with the 64-bit size form (size field 1, then the real size).
pub fn large_boxed(kind: &[u8; 4], payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 16);
    out.extend_from_slice(&1u32.to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(&(payload.len() as u64 + 16).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

pub fn full(kind: &[u8; 4], version: u8, flags: u32, body: &[u8]) -> Vec<u8> {
    let mut payload = ((u32::from(version) << 24) | flags).to_be_bytes().to_vec();
    payload.extend_from_slice(body);
    boxed(kind, &payload)
}

fn cat(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

/// 32-bit in version 0, 64-bit in version 1.
fn put_versioned(out: &mut Vec<u8>, v1: bool, value: u64) {
    if v1 {
        out.extend_from_slice(&value.to_be_bytes());
    } else {
        out.extend_from_slice(&(value as u32).to_be_bytes());
    }
}

const FILLER: u8 = 0xAB;

#[derive(Clone, Debug)]
pub struct VideoTrack {
    pub codec: [u8; 4],
    pub timescale: u32,
    /// (sample count, sample delta) runs of `stts`.
    pub runs: Vec<(u32, u32)>,
    pub width: u32,
    pub height: u32,
    /// 0, 90, 180 or 270 degrees clockwise.
    pub rotation: u32,
    pub enabled: bool,
    /// Write the size into `tkhd` (else zeros there, size only in the sample entry).
    pub size_in_header: bool,
    /// Overrides the `tkhd` duration (movie timescale), as an edit list would.
    pub presented: Option<u64>,
    pub sample_size: u32,
}

impl VideoTrack {
    pub fn new(timescale: u32, delta: u32, frames: u32, width: u32, height: u32) -> Self {
        Self {
            codec: *b"avc1",
            timescale,
            runs: vec![(frames, delta)],
            width,
            height,
            rotation: 0,
            enabled: true,
            size_in_header: true,
            presented: None,
            sample_size: 16,
        }
    }

    fn samples(&self) -> u32 {
        self.runs.iter().map(|r| r.0).sum()
    }

    fn ticks(&self) -> u64 {
        self.runs
            .iter()
            .map(|&(n, d)| u64::from(n) * u64::from(d))
            .sum()
    }

    fn deltas(&self) -> Vec<u32> {
        self.runs
            .iter()
            .flat_map(|&(n, d)| std::iter::repeat_n(d, n as usize))
            .collect()
    }
}

#[derive(Clone, Debug)]
pub struct AudioTrack {
    pub codec: [u8; 4],
    pub rate: u32,
    pub samples: u32,
    pub delta: u32,
    pub sample_size: u32,
}

impl AudioTrack {
    pub fn aac(rate: u32, samples: u32) -> Self {
        Self {
            codec: *b"mp4a",
            rate,
            samples,
            delta: 1024,
            sample_size: 8,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Movie {
    /// `None`: an old QuickTime file without `ftyp`.
    pub brand: Option<[u8; 4]>,
    pub timescale: u32,
    pub videos: Vec<VideoTrack>,
    pub audio: Option<AudioTrack>,
    pub moov_at_end: bool,
    /// Version-1 headers, `co64` and a 64-bit `mdat` size.
    pub wide: bool,
    /// The last `mdat` declares size 0 ("to the end of the file").
    pub mdat_to_end: bool,
    /// Fragmented: this many video samples per `moof`.
    pub fragment: Option<u32>,
}

enum Track<'a> {
    Video(&'a VideoTrack),
    Audio(&'a AudioTrack),
}

impl Track<'_> {
    fn timescale(&self) -> u32 {
        match self {
            Track::Video(v) => v.timescale,
            Track::Audio(a) => a.rate,
        }
    }
    fn ticks(&self) -> u64 {
        match self {
            Track::Video(v) => v.ticks(),
            Track::Audio(a) => u64::from(a.samples) * u64::from(a.delta),
        }
    }
    fn samples(&self) -> u32 {
        match self {
            Track::Video(v) => v.samples(),
            Track::Audio(a) => a.samples,
        }
    }
    fn sample_size(&self) -> u32 {
        match self {
            Track::Video(v) => v.sample_size,
            Track::Audio(a) => a.sample_size,
        }
    }
    fn data_len(&self) -> u64 {
        u64::from(self.samples()) * u64::from(self.sample_size())
    }
}

impl Movie {
    pub fn mp4(video: VideoTrack) -> Self {
        Self {
            brand: Some(*b"isom"),
            timescale: 1000,
            videos: vec![video],
            audio: None,
            moov_at_end: false,
            wide: false,
            mdat_to_end: false,
            fragment: None,
        }
    }

    pub fn mov(video: VideoTrack) -> Self {
        Self {
            brand: Some(*b"qt  "),
            timescale: 600,
            ..Self::mp4(video)
        }
    }

    pub fn with_audio(mut self, audio: AudioTrack) -> Self {
        self.audio = Some(audio);
        self
    }

    pub fn moov_at_end(mut self) -> Self {
        self.moov_at_end = true;
        self
    }

    fn tracks(&self) -> Vec<Track<'_>> {
        let mut tracks: Vec<Track<'_>> = self.videos.iter().map(Track::Video).collect();
        tracks.extend(self.audio.iter().map(Track::Audio));
        tracks
    }

    fn presented(&self, track: &Track<'_>) -> u64 {
        if let Track::Video(VideoTrack {
            presented: Some(ticks),
            ..
        }) = track
        {
            return *ticks;
        }
        if self.fragment.is_some() {
            return 0;
        }
        let scale = u64::from(track.timescale());
        (track.ticks() * u64::from(self.timescale) + scale / 2) / scale
    }

    fn is_mov(&self) -> bool {
        self.brand.is_none_or(|b| &b == b"qt  ")
    }

    pub fn build(&self) -> Vec<u8> {
        if let Some(per_fragment) = self.fragment {
            return self.build_fragmented(per_fragment);
        }
        let head = match self.brand {
            Some(brand) if &brand == b"qt  " => boxed(
                b"ftyp",
                &cat(&[brand.to_vec(), vec![0, 0, 2, 0], b"qt  ".to_vec()]),
            ),
            Some(brand) => boxed(
                b"ftyp",
                &cat(&[
                    brand.to_vec(),
                    vec![0, 0, 2, 0],
                    b"isomiso2avc1mp41".to_vec(),
                ]),
            ),
            // QuickTime pads with `wide` where a 64-bit `mdat` header could go later.
            None if self.moov_at_end => boxed(b"wide", &[]),
            None => Vec::new(),
        };
        let mdat_header = if self.wide { 16 } else { 8 };
        // The moov's size does not depend on the chunk offsets it holds, so a first pass
        // with placeholders tells where the media data will start.
        let moov_len = self.moov(&[0; 8]).len() as u64;
        let data_start = if self.moov_at_end {
            head.len() as u64 + mdat_header
        } else {
            head.len() as u64 + moov_len + mdat_header
        };
        let mut offsets = Vec::new();
        let mut at = data_start;
        let mut data = Vec::new();
        for track in self.tracks() {
            offsets.push(at);
            at += track.data_len();
            data.resize(data.len() + track.data_len() as usize, FILLER);
        }
        let moov = self.moov(&offsets);
        let mdat = if self.wide {
            large_boxed(b"mdat", &data)
        } else if self.mdat_to_end {
            let mut out = vec![0, 0, 0, 0];
            out.extend_from_slice(b"mdat");
            out.extend_from_slice(&data);
            out
        } else {
            boxed(b"mdat", &data)
        };
        if self.moov_at_end {
            cat(&[head, mdat, moov])
        } else {
            cat(&[head, moov, mdat])
        }
    }

    fn moov(&self, offsets: &[u64]) -> Vec<u8> {
        let v1 = self.wide;
        let tracks = self.tracks();
        let duration = tracks.iter().map(|t| self.presented(t)).max().unwrap_or(0);
        let mut mvhd = Vec::new();
        put_versioned(&mut mvhd, v1, 0);
        put_versioned(&mut mvhd, v1, 0);
        mvhd.extend_from_slice(&self.timescale.to_be_bytes());
        put_versioned(&mut mvhd, v1, duration);
        mvhd.extend_from_slice(&0x0001_0000u32.to_be_bytes());
        mvhd.extend_from_slice(&0x0100u16.to_be_bytes());
        mvhd.extend_from_slice(&[0; 10]);
        mvhd.extend_from_slice(&matrix(0));
        mvhd.extend_from_slice(&[0; 24]);
        mvhd.extend_from_slice(&(tracks.len() as u32 + 1).to_be_bytes());
        let mut parts = vec![full(b"mvhd", u8::from(v1), 0, &mvhd)];
        for (i, track) in tracks.iter().enumerate() {
            let offset = offsets.get(i).copied().unwrap_or(0);
            parts.push(self.trak(i as u32 + 1, track, offset));
        }
        if self.fragment.is_some() {
            let trex: Vec<Vec<u8>> = tracks
                .iter()
                .enumerate()
                .map(|(i, _)| {
                    let mut body = (i as u32 + 1).to_be_bytes().to_vec();
                    body.extend_from_slice(&[0, 0, 0, 1]);
                    // A default duration the fragments below never rely on for video.
                    body.extend_from_slice(&7u32.to_be_bytes());
                    body.extend_from_slice(&[0; 8]);
                    full(b"trex", 0, 0, &body)
                })
                .collect();
            parts.push(boxed(b"mvex", &trex.concat()));
        }
        // A QuickTime-style user data list with its zero terminator.
        parts.push(boxed(
            b"udta",
            &cat(&[boxed(b"\xA9too", b"\0\x05\0\0kino"), vec![0; 4]]),
        ));
        boxed(b"moov", &parts.concat())
    }

    fn trak(&self, id: u32, track: &Track<'_>, chunk_offset: u64) -> Vec<u8> {
        let v1 = self.wide;
        let fragmented = self.fragment.is_some();
        let (enabled, rotation, size) = match track {
            Track::Video(v) => {
                let size = if v.size_in_header {
                    (v.width, v.height)
                } else {
                    (0, 0)
                };
                (v.enabled, v.rotation, size)
            }
            Track::Audio(_) => (true, 0, (0, 0)),
        };
        let mut tkhd = Vec::new();
        put_versioned(&mut tkhd, v1, 0);
        put_versioned(&mut tkhd, v1, 0);
        tkhd.extend_from_slice(&id.to_be_bytes());
        tkhd.extend_from_slice(&[0; 4]);
        put_versioned(&mut tkhd, v1, self.presented(track));
        tkhd.extend_from_slice(&[0; 8]);
        tkhd.extend_from_slice(&[0; 4]); // layer, alternate group
        let volume: u16 = if matches!(track, Track::Audio(_)) {
            0x0100
        } else {
            0
        };
        tkhd.extend_from_slice(&volume.to_be_bytes());
        tkhd.extend_from_slice(&[0; 2]);
        tkhd.extend_from_slice(&matrix(rotation));
        tkhd.extend_from_slice(&(size.0 << 16).to_be_bytes());
        tkhd.extend_from_slice(&(size.1 << 16).to_be_bytes());
        let tkhd = full(b"tkhd", u8::from(v1), if enabled { 3 } else { 2 }, &tkhd);

        let mut mdhd = Vec::new();
        put_versioned(&mut mdhd, v1, 0);
        put_versioned(&mut mdhd, v1, 0);
        mdhd.extend_from_slice(&track.timescale().to_be_bytes());
        put_versioned(&mut mdhd, v1, if fragmented { 0 } else { track.ticks() });
        mdhd.extend_from_slice(&[0x55, 0xC4, 0, 0]);
        let mdhd = full(b"mdhd", u8::from(v1), 0, &mdhd);

        let (handler, media_header) = match track {
            Track::Video(_) => (b"vide", full(b"vmhd", 0, 1, &[0; 8])),
            Track::Audio(_) => (b"soun", full(b"smhd", 0, 0, &[0; 4])),
        };
        let component: &[u8; 4] = if self.is_mov() { b"mhlr" } else { b"\0\0\0\0" };
        let hdlr = full(
            b"hdlr",
            0,
            0,
            &cat(&[
                component.to_vec(),
                handler.to_vec(),
                vec![0; 12],
                b"Handler\0".to_vec(),
            ]),
        );
        let dinf = boxed(
            b"dinf",
            &full(
                b"dref",
                0,
                0,
                &cat(&[1u32.to_be_bytes().to_vec(), full(b"url ", 0, 1, &[])]),
            ),
        );
        let stbl = self.stbl(track, chunk_offset);
        let minf = boxed(b"minf", &cat(&[media_header, dinf, stbl]));
        let mdia = boxed(b"mdia", &cat(&[mdhd, hdlr, minf]));
        boxed(b"trak", &cat(&[tkhd, mdia]))
    }

    fn stbl(&self, track: &Track<'_>, chunk_offset: u64) -> Vec<u8> {
        let fragmented = self.fragment.is_some();
        let entry = match track {
            Track::Video(v) => {
                let mut e = vec![0; 6];
                e.extend_from_slice(&1u16.to_be_bytes());
                e.extend_from_slice(&[0; 16]);
                e.extend_from_slice(&(v.width as u16).to_be_bytes());
                e.extend_from_slice(&(v.height as u16).to_be_bytes());
                e.extend_from_slice(&0x0048_0000u32.to_be_bytes());
                e.extend_from_slice(&0x0048_0000u32.to_be_bytes());
                e.extend_from_slice(&[0; 4]);
                e.extend_from_slice(&1u16.to_be_bytes());
                e.extend_from_slice(&[0; 32]);
                e.extend_from_slice(&0x0018u16.to_be_bytes());
                e.extend_from_slice(&(-1i16).to_be_bytes());
                e.extend_from_slice(&boxed(b"avcC", &[1, 0x64, 0, 0x1F, 0xFF, 0xE0, 0]));
                boxed(&v.codec, &e)
            }
            Track::Audio(a) => {
                let mut e = vec![0; 6];
                e.extend_from_slice(&1u16.to_be_bytes());
                e.extend_from_slice(&[0; 8]);
                e.extend_from_slice(&2u16.to_be_bytes());
                e.extend_from_slice(&16u16.to_be_bytes());
                e.extend_from_slice(&[0; 4]);
                e.extend_from_slice(&(a.rate << 16).to_be_bytes());
                e.extend_from_slice(&full(b"esds", 0, 0, &[3, 0x19, 0, 1, 0]));
                boxed(&a.codec, &e)
            }
        };
        let stsd = full(b"stsd", 0, 0, &cat(&[1u32.to_be_bytes().to_vec(), entry]));
        let runs: Vec<(u32, u32)> = if fragmented {
            Vec::new()
        } else {
            match track {
                Track::Video(v) => v.runs.clone(),
                Track::Audio(a) => vec![(a.samples, a.delta)],
            }
        };
        let mut stts = (runs.len() as u32).to_be_bytes().to_vec();
        for (count, delta) in runs {
            stts.extend_from_slice(&count.to_be_bytes());
            stts.extend_from_slice(&delta.to_be_bytes());
        }
        let samples = if fragmented { 0 } else { track.samples() };
        let chunks = u32::from(!fragmented);
        let mut stsc = chunks.to_be_bytes().to_vec();
        if !fragmented {
            stsc.extend_from_slice(&cat(&[
                1u32.to_be_bytes().to_vec(),
                samples.to_be_bytes().to_vec(),
                1u32.to_be_bytes().to_vec(),
            ]));
        }
        let mut stsz = track.sample_size().to_be_bytes().to_vec();
        stsz.extend_from_slice(&samples.to_be_bytes());
        let mut offsets = chunks.to_be_bytes().to_vec();
        if !fragmented {
            put_versioned(&mut offsets, self.wide, chunk_offset);
        }
        let chunk_box = if self.wide { b"co64" } else { b"stco" };
        boxed(
            b"stbl",
            &cat(&[
                stsd,
                full(b"stts", 0, 0, &stts),
                full(b"stsc", 0, 0, &stsc),
                full(b"stsz", 0, 0, &stsz),
                full(chunk_box, 0, 0, &offsets),
            ]),
        )
    }

    /// `ftyp`, a sample-less `moov` with `mvex`, then `moof`+`mdat` pairs. Video runs
    /// carry per-sample durations; audio runs rely on the `tfhd` default duration.
    fn build_fragmented(&self, per_fragment: u32) -> Vec<u8> {
        let brand = self.brand.unwrap_or(*b"iso6");
        let mut out = boxed(
            b"ftyp",
            &cat(&[brand.to_vec(), vec![0, 0, 2, 0], b"iso6isomdash".to_vec()]),
        );
        out.extend_from_slice(&self.moov(&[]));
        let video = &self.videos[0];
        let deltas = video.deltas();
        let fragments = deltas.len().div_ceil(per_fragment as usize);
        let audio_per = self
            .audio
            .as_ref()
            .map(|a| (a.samples as usize).div_ceil(fragments));
        let mut audio_left = self.audio.as_ref().map_or(0, |a| a.samples as usize);
        for (n, chunk) in deltas.chunks(per_fragment as usize).enumerate() {
            let audio_count = audio_per.unwrap_or(0).min(audio_left);
            audio_left -= audio_count;
            let moof = |data_offset: u32| {
                let mut vtrun = (chunk.len() as u32).to_be_bytes().to_vec();
                vtrun.extend_from_slice(&data_offset.to_be_bytes());
                for &d in chunk {
                    vtrun.extend_from_slice(&d.to_be_bytes());
                    vtrun.extend_from_slice(&video.sample_size.to_be_bytes());
                }
                let vtraf = cat(&[
                    full(b"tfhd", 0, 0x02_0000, &1u32.to_be_bytes()),
                    full(b"tfdt", 0, 0, &0u32.to_be_bytes()),
                    full(b"trun", 0, 0x301, &vtrun),
                ]);
                let mut trafs = vec![boxed(b"traf", &vtraf)];
                if let Some(audio) = &self.audio {
                    let mut tfhd = 2u32.to_be_bytes().to_vec();
                    tfhd.extend_from_slice(&audio.delta.to_be_bytes());
                    let mut atrun = (audio_count as u32).to_be_bytes().to_vec();
                    atrun.extend_from_slice(&0u32.to_be_bytes());
                    for _ in 0..audio_count {
                        atrun.extend_from_slice(&audio.sample_size.to_be_bytes());
                    }
                    let atraf = cat(&[
                        full(b"tfhd", 0, 0x02_0008, &tfhd),
                        full(b"trun", 0, 0x201, &atrun),
                    ]);
                    trafs.push(boxed(b"traf", &atraf));
                }
                let mfhd = full(b"mfhd", 0, 0, &(n as u32 + 1).to_be_bytes());
                boxed(b"moof", &cat(&[vec![mfhd], trafs].concat()))
            };
            let moof_len = moof(0).len() as u32;
            out.extend_from_slice(&moof(moof_len + 8));
            let data_len = chunk.len() * video.sample_size as usize
                + audio_count * self.audio.as_ref().map_or(0, |a| a.sample_size as usize);
            out.extend_from_slice(&boxed(b"mdat", &vec![FILLER; data_len]));
        }
        out
    }
}

/// A 3x3 transformation matrix turning the picture clockwise by `degrees`.
fn matrix(degrees: u32) -> Vec<u8> {
    let one = 0x0001_0000i32;
    let (a, b, c, d) = match degrees {
        90 => (0, one, -one, 0),
        180 => (-one, 0, 0, -one),
        270 => (0, -one, one, 0),
        _ => (one, 0, 0, one),
    };
    [a, b, 0, c, d, 0, 0, 0, 0x4000_0000]
        .iter()
        .flat_map(|v| v.to_be_bytes())
        .collect()
}
