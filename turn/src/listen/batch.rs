//! Batched UDP I/O: many datagrams per system call (`recvmmsg`/`sendmmsg` on Linux), each
//! with its own address, through buffers that are allocated once and reused.
//!
//! A copy of `sfu/src/io/batch.rs` (the TURN crate does not depend on the SFU), without
//! the blocking receive and in-place access the SFU needs. What batching saves is the
//! per-call entry cost and, on receive, the extra call that finds the queue empty: a
//! relay worker reads every waiting client datagram in one call and sends the replies of
//! a whole scheduler tick to its clients in one call. Other Unix systems get the same API
//! over one `sendto`/`recvfrom` per datagram.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};

use socket2::{SockAddr, SockAddrStorage};

/// Datagrams per call: the kernel's `UIO_MAXIOV` allows 1024; 32 keeps a batch's headers
/// in cache and bounds how long one socket holds its worker before others are served.
pub(crate) const BATCH_SIZE: usize = 32;

/// A fixed set of datagram buffers, filled by [`DatagramBatch::recv`] or by
/// [`DatagramBatch::push`] and emptied by [`DatagramBatch::send`].
pub(crate) struct DatagramBatch {
    bufs: Vec<Box<[u8]>>,
    lens: Vec<usize>,
    addrs: Vec<SockAddr>,
    count: usize,
}

impl DatagramBatch {
    /// `BATCH_SIZE` buffers of `max_datagram` bytes each. Zeroed allocations this large
    /// come from fresh pages the kernel maps on first touch, so a batch of 64 KiB buffers
    /// costs memory only for the bytes datagrams actually fill.
    pub(crate) fn new(max_datagram: usize) -> Self {
        let unspecified = SockAddr::from(SocketAddr::from(([0, 0, 0, 0], 0)));
        Self {
            bufs: (0..BATCH_SIZE)
                .map(|_| vec![0u8; max_datagram].into_boxed_slice())
                .collect(),
            lens: vec![0; BATCH_SIZE],
            addrs: vec![unspecified; BATCH_SIZE],
            count: 0,
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.count
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub(crate) fn is_full(&self) -> bool {
        self.count == BATCH_SIZE
    }

    /// The `i`th datagram held: its bytes and its peer (source after `recv`, destination
    /// after `push`). `None` for a peer address that is not IP.
    pub(crate) fn get(&self, i: usize) -> Option<(&[u8], SocketAddr)> {
        if i >= self.count {
            return None;
        }
        let data = self.bufs.get(i)?.get(..*self.lens.get(i)?)?;
        Some((data, self.addrs.get(i)?.as_socket()?))
    }

    /// Queue a copy of `data` for `to`. Returns `false`, queueing nothing, when the batch is
    /// full or `data` does not fit a buffer.
    pub(crate) fn push(&mut self, data: &[u8], to: SocketAddr) -> bool {
        let Some(buf) = self.next_buffer() else {
            return false;
        };
        let Some(slot) = buf.get_mut(..data.len()) else {
            return false;
        };
        slot.copy_from_slice(data);
        self.commit(data.len(), to);
        true
    }

    /// The next free buffer, to build a datagram in place; [`DatagramBatch::commit`] queues it.
    pub(crate) fn next_buffer(&mut self) -> Option<&mut [u8]> {
        self.bufs.get_mut(self.count).map(|b| &mut b[..])
    }

    /// Queue the first `len` bytes of the buffer [`DatagramBatch::next_buffer`] returned.
    pub(crate) fn commit(&mut self, len: usize, to: SocketAddr) {
        if self.count >= BATCH_SIZE {
            return;
        }
        self.lens[self.count] = len.min(self.bufs[self.count].len());
        self.addrs[self.count] = SockAddr::from(to);
        self.count += 1;
    }

    /// Send every queued datagram and empty the batch. Returns how many the kernel took;
    /// the rest are dropped when the socket would block (as a congested link drops), since
    /// waiting would stall every other peer on the same thread.
    pub(crate) fn send(&mut self, socket: &impl AsRawFd) -> io::Result<usize> {
        let fd = socket.as_raw_fd();
        let total = self.count;
        let mut sent = 0;
        let mut result = Ok(());
        let mut retried = None;
        while sent < total {
            match sys::send(fd, &self.bufs, &self.lens, &self.addrs, sent..total) {
                Ok(0) => break,
                Ok(n) => sent += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    // A pending error (ICMP unreachable for an earlier datagram) is reported
                    // by, and cleared with, the next call: retry once before blaming this
                    // datagram. One bad destination must not cost the others their
                    // datagrams: then skip it and go on.
                    if retried != Some(sent) {
                        retried = Some(sent);
                        continue;
                    }
                    sent += 1;
                    result = Err(e);
                }
            }
        }
        self.count = 0;
        result.map(|()| sent)
    }

    /// Replace the contents with as many datagrams as are waiting, up to `BATCH_SIZE`,
    /// without blocking. `WouldBlock` when none is waiting.
    pub(crate) fn recv(&mut self, socket: &impl AsRawFd) -> io::Result<usize> {
        self.recv_with(socket, sys::NONBLOCKING)
    }

    fn recv_with(&mut self, socket: &impl AsRawFd, flags: libc::c_int) -> io::Result<usize> {
        self.count = 0;
        let n = loop {
            match sys::recv(
                socket.as_raw_fd(),
                &mut self.bufs,
                &mut self.lens,
                &mut self.addrs,
                flags,
            ) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other?,
            }
        };
        self.count = n;
        Ok(n)
    }
}

#[cfg(target_os = "linux")]
mod sys {
    use super::*;
    use std::ops::Range;

    pub(super) const NONBLOCKING: libc::c_int = libc::MSG_DONTWAIT;

    pub(super) fn send(
        fd: RawFd,
        bufs: &[Box<[u8]>],
        lens: &[usize],
        addrs: &[SockAddr],
        range: Range<usize>,
    ) -> io::Result<usize> {
        let mut iovs: [libc::iovec; BATCH_SIZE] = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; BATCH_SIZE];
        // SAFETY: an all-zero mmsghdr is a valid header with no name, data or control.
        let mut msgs: [libc::mmsghdr; BATCH_SIZE] = unsafe { std::mem::zeroed() };
        let count = range.len().min(BATCH_SIZE);
        // One pass of disjoint borrows, so no pointer handed to the kernel is invalidated by
        // a later reborrow of its array.
        for ((iov, msg), i) in iovs.iter_mut().zip(msgs.iter_mut()).zip(range.take(count)) {
            *iov = libc::iovec {
                // sendmmsg only reads through this pointer.
                iov_base: bufs[i].as_ptr() as *mut libc::c_void,
                iov_len: lens[i],
            };
            msg.msg_hdr.msg_name = addrs[i].as_ptr() as *mut libc::c_void;
            msg.msg_hdr.msg_namelen = addrs[i].len();
            msg.msg_hdr.msg_iov = iov;
            msg.msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: the first `count` headers point at buffers and addresses borrowed for the
        // duration of the call; the kernel writes only `msg_len`.
        let n = unsafe { libc::sendmmsg(fd, msgs.as_mut_ptr(), count as u32, 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    pub(super) fn recv(
        fd: RawFd,
        bufs: &mut [Box<[u8]>],
        lens: &mut [usize],
        addrs: &mut [SockAddr],
        flags: libc::c_int,
    ) -> io::Result<usize> {
        let mut iovs: [libc::iovec; BATCH_SIZE] = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; BATCH_SIZE];
        let mut names: [Option<SockAddrStorage>; BATCH_SIZE] = std::array::from_fn(|_| None);
        // SAFETY: an all-zero mmsghdr is a valid empty header.
        let mut msgs: [libc::mmsghdr; BATCH_SIZE] = unsafe { std::mem::zeroed() };
        let count = bufs.len().min(BATCH_SIZE);
        for (((buf, iov), msg), name) in bufs
            .iter_mut()
            .zip(iovs.iter_mut())
            .zip(msgs.iter_mut())
            .zip(names.iter_mut())
        {
            *iov = libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: buf.len(),
            };
            let name = name.insert(SockAddrStorage::zeroed());
            msg.msg_hdr.msg_namelen = name.size_of();
            msg.msg_hdr.msg_name = (name as *mut SockAddrStorage).cast();
            msg.msg_hdr.msg_iov = iov;
            msg.msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: every header points at a buffer, iovec and name buffer that are exclusively
        // borrowed for the call.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                msgs.as_mut_ptr(),
                count as u32,
                flags,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        for (i, name) in names.iter_mut().enumerate().take(n) {
            lens[i] = msgs[i].msg_len as usize;
            if let Some(name) = name.take() {
                // SAFETY: the kernel wrote a valid address of `msg_namelen` bytes into it.
                addrs[i] = unsafe { SockAddr::new(name, msgs[i].msg_hdr.msg_namelen) };
            }
        }
        Ok(n)
    }
}

#[cfg(all(unix, not(target_os = "linux")))]
mod sys {
    use super::*;
    use std::ops::Range;

    pub(super) const NONBLOCKING: libc::c_int = libc::MSG_DONTWAIT;

    pub(super) fn send(
        fd: RawFd,
        bufs: &[Box<[u8]>],
        lens: &[usize],
        addrs: &[SockAddr],
        range: Range<usize>,
    ) -> io::Result<usize> {
        let i = range.start;
        // SAFETY: the buffer and address are borrowed for the call.
        let n = unsafe {
            libc::sendto(
                fd,
                bufs[i].as_ptr().cast(),
                lens[i],
                0,
                addrs[i].as_ptr().cast(),
                addrs[i].len(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(1)
    }

    pub(super) fn recv(
        fd: RawFd,
        bufs: &mut [Box<[u8]>],
        lens: &mut [usize],
        addrs: &mut [SockAddr],
        flags: libc::c_int,
    ) -> io::Result<usize> {
        let mut name = SockAddrStorage::zeroed();
        let mut name_len = name.size_of();
        // SAFETY: buffer and name are exclusively borrowed for the call.
        let n = unsafe {
            libc::recvfrom(
                fd,
                bufs[0].as_mut_ptr().cast(),
                bufs[0].len(),
                flags,
                (&mut name as *mut SockAddrStorage).cast(),
                &mut name_len,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        lens[0] = n as usize;
        // SAFETY: the kernel wrote a valid address of `name_len` bytes.
        addrs[0] = unsafe { SockAddr::new(name, name_len) };
        Ok(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;

    fn loopback() -> UdpSocket {
        let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
        s.set_nonblocking(true).expect("nonblocking");
        s
    }

    #[test]
    fn a_batch_reaches_each_destination_with_its_own_payload() {
        let sender = loopback();
        let receivers: Vec<UdpSocket> = (0..3).map(|_| loopback()).collect();
        let mut out = DatagramBatch::new(1500);
        for round in 0..10u8 {
            for (i, r) in receivers.iter().enumerate() {
                let payload = vec![round; 100 + i];
                assert!(out.push(&payload, r.local_addr().expect("addr")));
            }
        }
        assert_eq!(out.len(), 30);
        assert_eq!(out.send(&sender).expect("send"), 30);
        assert!(out.is_empty());

        for (i, r) in receivers.iter().enumerate() {
            let mut batch = DatagramBatch::new(1500);
            let mut rounds = Vec::new();
            while rounds.len() < 10 {
                let n = batch.recv(r).expect("datagrams waiting");
                for k in 0..n {
                    let (data, from) = batch.get(k).expect("datagram");
                    assert_eq!(from, sender.local_addr().expect("addr"));
                    assert_eq!(data.len(), 100 + i);
                    assert!(data.iter().all(|b| *b == data[0]));
                    rounds.push(data[0]);
                }
            }
            assert_eq!(rounds, (0..10).collect::<Vec<u8>>());
        }
    }

    #[test]
    fn an_empty_socket_would_block() {
        let socket = loopback();
        let mut batch = DatagramBatch::new(1500);
        let err = batch.recv(&socket).expect_err("nothing waiting");
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        assert!(batch.get(0).is_none());
    }

    #[test]
    fn a_full_batch_or_an_oversized_datagram_is_refused() {
        let mut batch = DatagramBatch::new(10);
        let to = SocketAddr::from(([127, 0, 0, 1], 9));
        assert!(!batch.push(&[0u8; 11], to));
        for _ in 0..BATCH_SIZE {
            assert!(batch.push(&[1u8; 10], to));
        }
        assert!(batch.is_full());
        assert!(!batch.push(&[1u8; 10], to));
    }

    #[test]
    fn ipv6_peers_round_trip() {
        let Ok(a) = UdpSocket::bind("[::1]:0") else {
            return; // no IPv6 loopback here
        };
        let b = UdpSocket::bind("[::1]:0").expect("bind");
        b.set_nonblocking(true).expect("nonblocking");
        let mut out = DatagramBatch::new(100);
        assert!(out.push(b"hello", b.local_addr().expect("addr")));
        assert_eq!(out.send(&a).expect("send"), 1);
        let mut inb = DatagramBatch::new(100);
        let mut n = 0;
        for _ in 0..100 {
            match inb.recv(&b) {
                Ok(k) => {
                    n = k;
                    break;
                }
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(5)),
            }
        }
        assert_eq!(n, 1);
        let (data, from) = inb.get(0).expect("datagram");
        assert_eq!(data, b"hello");
        assert_eq!(from, a.local_addr().expect("addr"));
    }
}
