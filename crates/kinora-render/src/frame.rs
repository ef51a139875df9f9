//! Frames in 8-bit I420 (Y at full size, U and V at half size in each direction), the one
//! pixel format the engine works in after a single colour conversion per source.

/// One plane of 8-bit samples, row-major, `stride >= width`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plane {
    pub width: usize,
    pub height: usize,
    pub stride: usize,
    pub data: Vec<u8>,
}

impl Plane {
    pub fn new(width: usize, height: usize, fill: u8) -> Self {
        Self {
            width,
            height,
            stride: width,
            data: vec![fill; width * height],
        }
    }

    pub fn row(&self, y: usize) -> &[u8] {
        let start = y * self.stride;
        &self.data[start..start + self.width]
    }

    pub fn row_mut(&mut self, y: usize) -> &mut [u8] {
        let start = y * self.stride;
        &mut self.data[start..start + self.width]
    }

    pub fn get(&self, x: usize, y: usize) -> u8 {
        self.data[y * self.stride + x]
    }
}

/// A frame of even width and height.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct I420Frame {
    pub y: Plane,
    pub u: Plane,
    pub v: Plane,
}

impl I420Frame {
    /// A frame of one colour, given in limited-range BT.709 YUV.
    pub fn filled(width: usize, height: usize, (y, u, v): (u8, u8, u8)) -> Self {
        debug_assert!(
            width.is_multiple_of(2) && height.is_multiple_of(2),
            "I420 needs even sizes"
        );
        Self {
            y: Plane::new(width, height, y),
            u: Plane::new(width / 2, height / 2, u),
            v: Plane::new(width / 2, height / 2, v),
        }
    }

    pub fn width(&self) -> usize {
        self.y.width
    }

    pub fn height(&self) -> usize {
        self.y.height
    }
}
