//! Frames on a peer link: a little-endian `u64` byte length, then the bytes. Buffers of `f32`
//! go as their in-memory bytes (every target this builds for is little-endian).

use std::io::{Read, Write};
use std::net::TcpStream;

/// A frame larger than this is a protocol error, not an allocation to attempt.
const MAX_FRAME: u64 = 64 << 30;

pub(super) fn write_frame(mut stream: &TcpStream, bytes: &[u8]) -> std::io::Result<()> {
    stream.write_all(&(bytes.len() as u64).to_le_bytes())?;
    stream.write_all(bytes)?;
    stream.flush()
}

fn read_len(mut stream: &TcpStream) -> std::io::Result<usize> {
    let mut len = [0u8; 8];
    stream.read_exact(&mut len)?;
    let len = u64::from_le_bytes(len);
    if len > MAX_FRAME {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("a frame of {len} bytes")));
    }
    Ok(len as usize)
}

/// A frame that must be exactly `len` bytes long (a handshake): anything else is refused before
/// it is read.
pub(super) fn read_frame_of(mut stream: &TcpStream, len: usize) -> std::io::Result<Vec<u8>> {
    let got = read_len(stream)?;
    if got != len {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("a frame of {got} bytes, not {len}")));
    }
    let mut bytes = vec![0u8; len];
    stream.read_exact(&mut bytes)?;
    Ok(bytes)
}

pub(super) fn write_u64s(stream: &TcpStream, values: &[u64]) -> std::io::Result<()> {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    write_frame(stream, &bytes)
}

pub(super) fn read_u64s(stream: &TcpStream) -> std::io::Result<Vec<u64>> {
    let bytes = read_frame(stream)?;
    if bytes.len() % 8 != 0 {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{} bytes are no u64s", bytes.len())));
    }
    Ok(bytes.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes"))).collect())
}

pub(super) fn read_frame(mut stream: &TcpStream) -> std::io::Result<Vec<u8>> {
    let mut bytes = vec![0u8; read_len(stream)?];
    stream.read_exact(&mut bytes)?;
    Ok(bytes)
}

pub(super) fn write_f32s(stream: &TcpStream, values: &[f32]) -> std::io::Result<()> {
    write_frame(stream, bytemuck::cast_slice(values))
}

pub(super) fn read_f32s(mut stream: &TcpStream) -> std::io::Result<Vec<f32>> {
    let len = read_len(stream)?;
    if len % 4 != 0 {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{len} bytes are no f32 buffer")));
    }
    let mut values = vec![0f32; len / 4];
    stream.read_exact(bytemuck::cast_slice_mut(&mut values))?;
    Ok(values)
}
