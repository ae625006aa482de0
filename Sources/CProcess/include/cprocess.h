#ifndef OPENCLAW_CPROCESS_H
#define OPENCLAW_CPROCESS_H
#include <sys/types.h>

/// pidfd_open(2): a file descriptor that becomes readable when the process exits (-1 + errno on
/// failure). syscall(2) is variadic and cannot be called from Swift.
int openclaw_pidfd_open(pid_t pid);

/// The TCP sockets in LISTEN state on `port` (IPv4 and IPv6), asked of the kernel through
/// NETLINK_SOCK_DIAG: their inodes and owners' uids, at most `max`. Returns how many were found,
/// or -errno when netlink cannot be used (then read /proc/net/tcp instead). Unlike
/// /proc/net/tcp, the kernel only walks the listening sockets: fast even with 100k connections.
int openclaw_tcp_listeners(int port, unsigned long long *inodes, unsigned int *uids, int max);

/// The processes with an fd on one of the sockets `inodes` (n_inodes of them): their pids, at most
/// `max`. Every process in /proc order, or, with `first_only`, the newest process holding one
/// (scanning down from the highest pid, stopping there) and PID 1 if it holds one too: all a
/// refused start needs to name, at a fraction of the cost (each fd of each process is a
/// readlinkat). Processes this user cannot inspect are skipped.
int openclaw_socket_holders(const unsigned long long *inodes, int n_inodes, int *pids, int max, int first_only);

/// The owner (uid) of the TCP socket on this host whose own address is `source`:`source_port` and
/// whose peer is `destination`:`destination_port` (4 bytes for AF_INET, 16 for AF_INET6, network
/// order; ports in host order), asked of the kernel through NETLINK_SOCK_DIAG by that exact
/// four-tuple. For a loopback client of ours: source = its address, destination = ours. Returns
/// 0 with the uid in `*uid`, or -errno (-ENOENT: no such socket, it has gone).
int openclaw_tcp_socket_uid(int family, const void *source, int source_port, const void *destination, int destination_port, unsigned int *uid);

/// SIGHUP caught from now on: a handler writes each one's sender (pid, si_code, and the sigqueue
/// value) into a pipe, whose read end (non-blocking, close-on-exec) this returns; -errno on
/// failure. Once per process (later calls return the same fd). A SIGHUP before anyone reads
/// waits in the pipe instead of ending the process.
int openclaw_install_hangups(void);

/// One SIGHUP from that pipe: 1 with the sender's pid, si_code (SI_QUEUE for sigqueue) and value;
/// 0 when none is waiting; -errno.
int openclaw_read_hangup(int fd, int *pid, int *code, int *value);

/// sigqueue(pid, signal, value): 0 or -errno.
int openclaw_queue_signal(int pid, int signal, int value);

/// Blocks `signal` in the calling thread (to wait for it with sigtimedwait): 0 or -errno.
int openclaw_block_signal(int signal);

/// Waits up to `timeout_ms` for `signal` sent with sigqueue by `pid` (others are skipped): 0 with
/// its value, -ETIMEDOUT, or -errno.
int openclaw_wait_signal_from(int signal, int pid, int timeout_ms, int *value);

/// memfd_create(name, MFD_CLOEXEC): an anonymous file (-1 + errno on failure). Glibc declares it
/// only under _GNU_SOURCE, which Swift's Glibc module does not set.
int openclaw_memfd_create(const char *name);

/// The most fds one SCM_RIGHTS message may carry (the kernel's SCM_MAX_FD).
#define OPENCLAW_MAX_FDS_PER_MESSAGE 253

/// sendmsg(2) of `length` bytes with `n_fds` fds (at most OPENCLAW_MAX_FDS_PER_MESSAGE) as
/// SCM_RIGHTS: the bytes sent, or -errno.
long openclaw_send_with_fds(int socket, const void *bytes, unsigned long length, const int *fds, int n_fds);

/// recvmsg(2) of one message (MSG_DONTWAIT, MSG_CMSG_CLOEXEC) into `bytes`, its fds into `fds`
/// (room for OPENCLAW_MAX_FDS_PER_MESSAGE): the byte count (0 at the end of the stream) with
/// *n_fds set, or -errno. A message whose bytes or fds did not fit gives -EMSGSIZE, its fds
/// closed.
long openclaw_receive_with_fds(int socket, void *bytes, unsigned long capacity, int *fds, int *n_fds);

/// Runs `path` with the one argument `argument` and only PATH in its environment, its stdin and
/// stderr /dev/null: its exit status with up to `capacity`-1 bytes of its stdout in `output`
/// (NUL-terminated), or -errno (-ETIMEDOUT after `timeout_ms`, the child killed).
int openclaw_run_for_output(const char *path, const char *argument, char *output, int capacity, int timeout_ms);

#endif
