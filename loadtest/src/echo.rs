//! The minimal framed echo server: the baseline that PayMesh's throughput is compared with.
//!
//! It does what any PayMesh-framed server must do and nothing more: split frames off the stream
//! (checking magic, length and CRC-32C), and answer each with a frame of the same size whose type
//! is the request's | 0x80 (LOGIN 0x01 gets 0x81, AUTHORIZE 0x10 gets 0x90), same correlation id,
//! same body. One task per connection; one read drains every buffered frame and one write sends
//! all their answers, as the router does.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use paymesh_codecs::frame::{FRAME_BODY_BYTES_MAX, FrameHeader, decode_frame, encode_frame};
use paymesh_codecs::message::ANSWER_BIT;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, oneshot};
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

use crate::error::LoadError;
use crate::tls::{PemIdentity, server_config};

/// Connections the echo server serves at once; more wait in the accept queue.
pub const ECHO_CONNECTIONS_MAX: usize = 10_000;
/// Read buffer of one connection, bytes (it grows to hold one frame at most beyond this).
pub const ECHO_READ_BUFFER_BYTES: usize = 64 * 1024;

/// A running echo server; stops when [`EchoServer::shutdown`] is called or it is dropped.
#[derive(Debug)]
pub struct EchoServer {
    local_addr: SocketAddr,
    tls: bool,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl EchoServer {
    /// Binds `addr` (port 0 picks a free one) and starts serving on the current tokio runtime;
    /// with `identity`, connections speak TLS.
    pub async fn bind(
        addr: SocketAddr,
        identity: Option<&PemIdentity>,
    ) -> Result<EchoServer, LoadError> {
        let acceptor = identity
            .map(server_config)
            .transpose()?
            .map(TlsAcceptor::from);
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel();
        let tls = acceptor.is_some();
        let task = tokio::spawn(accept_loop(listener, acceptor, stopped));
        Ok(EchoServer {
            local_addr,
            tls,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Whether connections speak TLS.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// Stops accepting and closes every connection.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Serves until the task is cancelled (for `loadtest echo-server`).
    pub async fn wait(mut self) {
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: Option<TlsAcceptor>,
    mut stopped: oneshot::Receiver<()>,
) {
    let permits = Arc::new(Semaphore::new(ECHO_CONNECTIONS_MAX));
    // Dropping the set when the loop ends aborts every connection task.
    let mut connections = JoinSet::new();
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let accepted = tokio::select! {
            _ = &mut stopped => return,
            accepted = listener.accept() => accepted,
        };
        // Reap finished connections so the set stays as small as the live ones.
        while connections.try_join_next().is_some() {}
        let Ok((stream, _peer)) = accepted else {
            continue;
        };
        let acceptor = acceptor.clone();
        connections.spawn(async move {
            let _permit = permit;
            let _ = stream.set_nodelay(true);
            match acceptor {
                Some(acceptor) => {
                    if let Ok(tls) = acceptor.accept(stream).await {
                        serve(tls).await;
                    }
                }
                None => serve::<TcpStream>(stream).await,
            }
        });
    }
}

/// Answers every frame of one connection until it closes or sends a broken frame.
async fn serve<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) {
    let mut read = BytesMut::with_capacity(ECHO_READ_BUFFER_BYTES);
    let mut write = BytesMut::with_capacity(ECHO_READ_BUFFER_BYTES);
    loop {
        match stream.read_buf(&mut read).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        loop {
            match decode_frame(&mut read, FRAME_BODY_BYTES_MAX) {
                Ok(Some(frame)) => {
                    let header = FrameHeader {
                        msg_type: frame.header.msg_type | ANSWER_BIT,
                        ..frame.header
                    };
                    encode_frame(&header, &frame.body, &mut write);
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
        if !write.is_empty() {
            if stream.write_all(&write).await.is_err() || stream.flush().await.is_err() {
                return;
            }
            write.clear();
        }
        if read.capacity() < ECHO_READ_BUFFER_BYTES / 4 {
            read.reserve(ECHO_READ_BUFFER_BYTES);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn answers_frames_with_the_answer_type() {
        let server = EchoServer::bind("127.0.0.1:0".parse().unwrap(), None)
            .await
            .unwrap();
        let mut client = TcpStream::connect(server.local_addr()).await.unwrap();
        let mut out = BytesMut::new();
        encode_frame(&FrameHeader::new(0x01, 7), b"login", &mut out);
        encode_frame(&FrameHeader::new(0x10, 8), &[1; 100], &mut out);
        client.write_all(&out).await.unwrap();
        let mut buf = BytesMut::new();
        let mut frames = Vec::new();
        while frames.len() < 2 {
            client.read_buf(&mut buf).await.unwrap();
            while let Some(frame) = decode_frame(&mut buf, FRAME_BODY_BYTES_MAX).unwrap() {
                frames.push(frame);
            }
        }
        assert_eq!(
            (frames[0].header.msg_type, frames[0].header.correlation_id),
            (0x81, 7)
        );
        assert_eq!(frames[0].body.as_ref(), b"login");
        assert_eq!(
            (frames[1].header.msg_type, frames[1].body.len()),
            (0x90, 100)
        );
        // A broken frame closes the connection.
        client
            .write_all(b"XX garbage that is not a frame....")
            .await
            .unwrap();
        let mut rest = Vec::new();
        assert_eq!(client.read_to_end(&mut rest).await.unwrap(), 0);
        server.shutdown().await;
    }
}
