//! Batched UDP I/O: many datagrams per system call (`recvmmsg`/`sendmmsg` on Linux), each
//! with its own address, through buffers that are allocated once and reused.
//!
//! An SFU's fan-out sends one packet to many destinations, so GSO (one destination per call)
//! does not apply; what batching saves is the per-call entry cost, a large share of the
//! per-datagram kernel cost on loopback and real NICs alike, and on receive the extra call
//! that finds the queue empty. The SFU's media workers, the TURN relay and the bench's floor
//! baseline all move datagrams through it. Other Unix systems get the same API over one
//! `sendto`/`recvfrom` per datagram.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};

use socket2::{SockAddr, SockAddrStorage};

/// The most datagrams one call moves (the headers of a call live on the stack). The kernel's
/// `UIO_MAXIOV` allows 1024; 64 keeps a batch in cache.
pub const MAX_BATCH: usize = 64;

/// A fixed set of datagram buffers, filled by [`DatagramBatch::recv`] or by
/// [`DatagramBatch::push`] and emptied by [`DatagramBatch::send`].
pub struct DatagramBatch {
    bufs: Vec<Box<[u8]>>,
    lens: Vec<usize>,
    addrs: Vec<SockAddr>,
    count: usize,
}

impl DatagramBatch {
    /// `capacity` buffers (at most [`MAX_BATCH`]) of `max_datagram` bytes each. Zeroed
    /// allocations this large come from fresh pages the kernel maps on first touch, so
    /// buffers cost memory only for the bytes datagrams actually fill.
    pub fn new(capacity: usize, max_datagram: usize) -> Self {
        let capacity = capacity.clamp(1, MAX_BATCH);
        let unspecified = SockAddr::from(SocketAddr::from(([0, 0, 0, 0], 0)));
        Self {
            bufs: (0..capacity)
                .map(|_| vec![0u8; max_datagram].into_boxed_slice())
                .collect(),
            lens: vec![0; capacity],
            addrs: vec![unspecified; capacity],
            count: 0,
        }
    }

    /// How many datagrams it holds when full; a `recv` that returns fewer drained the queue.
    pub fn capacity(&self) -> usize {
        self.bufs.len()
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn is_full(&self) -> bool {
        self.count == self.capacity()
    }

    /// The `i`th datagram held: its bytes and its peer (source after `recv`, destination
    /// after `push`). `None` for a peer address that is not IP.
    pub fn get(&self, i: usize) -> Option<(&[u8], SocketAddr)> {
        if i >= self.count {
            return None;
        }
        let data = self.bufs.get(i)?.get(..*self.lens.get(i)?)?;
        Some((data, self.addrs.get(i)?.as_socket()?))
    }

    /// The `i`th datagram held, writable (to decrypt in place, say).
    pub fn get_mut(&mut self, i: usize) -> Option<(&mut [u8], SocketAddr)> {
        if i >= self.count {
            return None;
        }
        let peer = self.addrs.get(i)?.as_socket()?;
        let len = *self.lens.get(i)?;
        Some((self.bufs.get_mut(i)?.get_mut(..len)?, peer))
    }

    /// Queue a copy of `data` for `to`. Returns `false`, queueing nothing, when the batch is
    /// full or `data` does not fit a buffer.
    pub fn push(&mut self, data: &[u8], to: SocketAddr) -> bool {
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
    pub fn next_buffer(&mut self) -> Option<&mut [u8]> {
        self.bufs.get_mut(self.count).map(|b| &mut b[..])
    }

    /// Queue the first `len` bytes of the buffer [`DatagramBatch::next_buffer`] returned.
    pub fn commit(&mut self, len: usize, to: SocketAddr) {
        if self.count >= self.capacity() {
            return;
        }
        self.lens[self.count] = len.min(self.bufs[self.count].len());
        self.addrs[self.count] = SockAddr::from(to);
        self.count += 1;
    }

    pub fn clear(&mut self) {
        self.count = 0;
    }

    /// Send every queued datagram and empty the batch. Returns how many the kernel took;
    /// the rest are dropped when the socket would block (as a congested link drops), since
    /// waiting would stall every other peer on the same thread.
    pub fn send(&mut self, socket: &impl AsRawFd) -> io::Result<usize> {
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

    /// Replace the contents with as many datagrams as are waiting, up to its capacity,
    /// without blocking. `WouldBlock` when none is waiting.
    pub fn recv(&mut self, socket: &impl AsRawFd) -> io::Result<usize> {
        self.recv_with(socket, sys::NONBLOCKING)
    }

    /// On a blocking socket: wait for one datagram (up to the socket's read timeout, then
    /// `WouldBlock` or `TimedOut`), then take as many more as are waiting, up to its capacity.
    pub fn recv_wait(&mut self, socket: &impl AsRawFd) -> io::Result<usize> {
        self.recv_with(socket, sys::WAIT_FOR_ONE)
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
    pub(super) const WAIT_FOR_ONE: libc::c_int = libc::MSG_WAITFORONE;

    pub(super) fn send(
        fd: RawFd,
        bufs: &[Box<[u8]>],
        lens: &[usize],
        addrs: &[SockAddr],
        range: Range<usize>,
    ) -> io::Result<usize> {
        let mut iovs: [libc::iovec; MAX_BATCH] = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; MAX_BATCH];
        // SAFETY: an all-zero mmsghdr is a valid header with no name, data or control.
        let mut msgs: [libc::mmsghdr; MAX_BATCH] = unsafe { std::mem::zeroed() };
        let count = range.len().min(MAX_BATCH);
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
        let mut iovs: [libc::iovec; MAX_BATCH] = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; MAX_BATCH];
        let mut names: [Option<SockAddrStorage>; MAX_BATCH] = std::array::from_fn(|_| None);
        // SAFETY: an all-zero mmsghdr is a valid empty header.
        let mut msgs: [libc::mmsghdr; MAX_BATCH] = unsafe { std::mem::zeroed() };
        let count = bufs.len().min(MAX_BATCH);
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
    pub(super) const WAIT_FOR_ONE: libc::c_int = 0;

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
        let mut out = DatagramBatch::new(MAX_BATCH, 1500);
        for round in 0..20u8 {
            for (i, r) in receivers.iter().enumerate() {
                let payload = vec![round; 100 + i];
                assert!(out.push(&payload, r.local_addr().expect("addr")));
            }
        }
        assert_eq!(out.len(), 60);
        assert_eq!(out.send(&sender).expect("send"), 60);
        assert!(out.is_empty());

        for (i, r) in receivers.iter().enumerate() {
            let mut batch = DatagramBatch::new(MAX_BATCH, 1500);
            let mut rounds = Vec::new();
            while rounds.len() < 20 {
                let n = batch.recv(r).expect("datagrams waiting");
                for k in 0..n {
                    let (data, from) = batch.get(k).expect("datagram");
                    assert_eq!(from, sender.local_addr().expect("addr"));
                    assert_eq!(data.len(), 100 + i);
                    assert!(data.iter().all(|b| *b == data[0]));
                    rounds.push(data[0]);
                }
            }
            assert_eq!(rounds, (0..20).collect::<Vec<u8>>());
        }
    }

    #[test]
    fn recv_wait_waits_for_the_first_datagram_then_takes_what_is_there() {
        let receiver = UdpSocket::bind("127.0.0.1:0").expect("bind");
        receiver
            .set_read_timeout(Some(std::time::Duration::from_millis(20)))
            .expect("timeout");
        let mut batch = DatagramBatch::new(MAX_BATCH, 100);
        let err = batch.recv_wait(&receiver).expect_err("nothing came");
        assert!(matches!(
            err.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ));
        let sender = loopback();
        let to = receiver.local_addr().expect("addr");
        let mut out = DatagramBatch::new(MAX_BATCH, 100);
        for payload in [b"one", b"two"] {
            assert!(out.push(payload, to));
        }
        out.send(&sender).expect("send");
        assert_eq!(batch.recv_wait(&receiver).expect("datagrams"), 2);
        // Decrypting in place: the bytes are writable where they lie.
        let (data, _) = batch.get_mut(1).expect("second");
        data[0] = b'T';
        assert_eq!(batch.get(1).map(|(d, _)| d), Some(&b"Two"[..]));
    }

    #[test]
    fn an_empty_socket_would_block() {
        let socket = loopback();
        let mut batch = DatagramBatch::new(MAX_BATCH, 1500);
        let err = batch.recv(&socket).expect_err("nothing waiting");
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        assert!(batch.get(0).is_none());
    }

    #[test]
    fn a_full_batch_or_an_oversized_datagram_is_refused() {
        let mut batch = DatagramBatch::new(MAX_BATCH, 10);
        let to = SocketAddr::from(([127, 0, 0, 1], 9));
        assert!(!batch.push(&[0u8; 11], to));
        for _ in 0..MAX_BATCH {
            assert!(batch.push(&[1u8; 10], to));
        }
        assert!(batch.is_full());
        assert!(!batch.push(&[1u8; 10], to));
    }

    #[test]
    fn a_smaller_batch_is_full_at_its_capacity_and_receives_no_more() {
        let mut small = DatagramBatch::new(4, 10);
        assert_eq!(small.capacity(), 4);
        let receiver = UdpSocket::bind("127.0.0.1:0").expect("bind");
        receiver.set_nonblocking(true).expect("nonblocking");
        let to = receiver.local_addr().expect("addr");
        for _ in 0..4 {
            assert!(small.push(&[1u8; 10], to));
        }
        assert!(small.is_full());
        assert!(!small.push(&[1u8; 10], to));
        let mut out = DatagramBatch::new(MAX_BATCH, 10);
        for _ in 0..6 {
            assert!(out.push(&[2u8; 10], to));
        }
        out.send(&loopback()).expect("send");
        let mut inbox = DatagramBatch::new(4, 10);
        let mut got = 0;
        for _ in 0..100 {
            match inbox.recv(&receiver) {
                Ok(n) => {
                    assert!(n <= 4, "a batch of 4 took {n}");
                    got += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if got == 6 {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(got, 6);
        assert_eq!(DatagramBatch::new(1000, 10).capacity(), MAX_BATCH);
    }

    #[test]
    fn ipv6_peers_round_trip() {
        let Ok(a) = UdpSocket::bind("[::1]:0") else {
            return; // no IPv6 loopback here
        };
        let b = UdpSocket::bind("[::1]:0").expect("bind");
        b.set_nonblocking(true).expect("nonblocking");
        let mut out = DatagramBatch::new(MAX_BATCH, 100);
        assert!(out.push(b"hello", b.local_addr().expect("addr")));
        assert_eq!(out.send(&a).expect("send"), 1);
        let mut inb = DatagramBatch::new(MAX_BATCH, 100);
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
