#define _GNU_SOURCE
#include "cprocess.h"
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <errno.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

int openclaw_memfd_create(const char *name) {
    return memfd_create(name, MFD_CLOEXEC);
}

int openclaw_pidfd_open(pid_t pid) {
    return (int)syscall(SYS_pidfd_open, pid, 0);
}

int openclaw_tcp_listeners(int port, unsigned long long *inodes, unsigned int *uids, int max) {
    int fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
    if (fd < 0) return -errno;
    int count = 0;
    const int families[2] = {AF_INET, AF_INET6};
    for (int f = 0; f < 2; f++) {
        struct {
            struct nlmsghdr header;
            struct inet_diag_req_v2 request;
        } message;
        memset(&message, 0, sizeof(message));
        message.header.nlmsg_len = sizeof(message);
        message.header.nlmsg_type = SOCK_DIAG_BY_FAMILY;
        message.header.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
        message.request.sdiag_family = families[f];
        message.request.sdiag_protocol = IPPROTO_TCP;
        message.request.idiag_states = 1 << 10; /* TCP_LISTEN */
        if (send(fd, &message, sizeof(message), 0) < 0) {
            int e = errno;
            close(fd);
            return -e;
        }
        int done = 0;
        while (!done) {
            char buffer[16384];
            ssize_t n = recv(fd, buffer, sizeof(buffer), 0);
            if (n <= 0) {
                int e = n < 0 ? errno : EIO;
                close(fd);
                return -e;
            }
            for (struct nlmsghdr *h = (struct nlmsghdr *)buffer; NLMSG_OK(h, (unsigned int)n); h = NLMSG_NEXT(h, n)) {
                if (h->nlmsg_type == NLMSG_DONE) { done = 1; break; }
                if (h->nlmsg_type == NLMSG_ERROR) {
                    struct nlmsgerr *error = NLMSG_DATA(h);
                    close(fd);
                    return error->error < 0 ? error->error : -EIO;
                }
                struct inet_diag_msg *m = NLMSG_DATA(h);
                if (ntohs(m->id.idiag_sport) == port && count < max) {
                    inodes[count] = m->idiag_inode;
                    uids[count] = m->idiag_uid;
                    count++;
                }
            }
        }
    }
    close(fd);
    return count;
}

int openclaw_socket_holders(const unsigned long long *inodes, int n_inodes, int *pids, int max) {
    char targets[64][40];
    int lengths[64];
    if (n_inodes > 64) n_inodes = 64;
    for (int i = 0; i < n_inodes; i++) lengths[i] = snprintf(targets[i], sizeof(targets[i]), "socket:[%llu]", inodes[i]);
    int proc = open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (proc < 0) return -errno;
    DIR *all = fdopendir(proc);
    if (!all) { int e = errno; close(proc); return -e; }
    int count = 0;
    struct dirent *process;
    while ((process = readdir(all)) != NULL && count < max) {
        const char *name = process->d_name;
        if (name[0] < '1' || name[0] > '9') continue;
        char path[64];
        snprintf(path, sizeof(path), "%s/fd", name);
        int fds = openat(proc, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fds < 0) continue; /* gone, or not ours to inspect */
        DIR *dir = fdopendir(fds);
        if (!dir) { close(fds); continue; }
        struct dirent *entry;
        int found = 0;
        while (!found && (entry = readdir(dir)) != NULL) {
            if (entry->d_name[0] < '0' || entry->d_name[0] > '9') continue;
            char link[64];
            ssize_t n = readlinkat(fds, entry->d_name, link, sizeof(link));
            if (n < 8 || memcmp(link, "socket:[", 8) != 0) continue;
            for (int i = 0; i < n_inodes; i++) {
                if (n == lengths[i] && memcmp(link, targets[i], (size_t)n) == 0) { found = 1; break; }
            }
        }
        closedir(dir);
        if (found) pids[count++] = atoi(name);
    }
    closedir(all);
    return count;
}
