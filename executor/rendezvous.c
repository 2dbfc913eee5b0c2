/* rendezvous.c: TCP broadcast of the NCCL unique id (see rendezvous.h). */
#include "executor/rendezvous.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define RV_MAGIC 0x5652504du   /* "MPRV" read as little-endian bytes */

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* milliseconds left until deadline, at least 0 */
static int ms_left(double deadline) {
    double s = deadline - now_s();
    return s <= 0 ? 0 : (int)(s * 1000.0) + 1;
}

static void put_u32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)v; p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16); p[3] = (unsigned char)(v >> 24);
}

static uint32_t get_u32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Reads exactly n bytes before the deadline; 0 ok, -1 timeout/closed/error (errno-like code in *why). */
static int read_full(int fd, void *buf, size_t n, double deadline, const char **why) {
    unsigned char *p = buf;
    while (n > 0) {
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        int r = poll(&pf, 1, ms_left(deadline));
        if (r == 0) { *why = "timed out"; return -1; }
        if (r < 0) { if (errno == EINTR) continue; *why = strerror(errno); return -1; }
        ssize_t got = recv(fd, p, n, 0);
        if (got == 0) { *why = "connection closed by the other side"; return -1; }
        if (got < 0) { if (errno == EINTR || errno == EAGAIN) continue; *why = strerror(errno); return -1; }
        p += got;
        n -= (size_t)got;
    }
    return 0;
}

static int write_full(int fd, const void *buf, size_t n, double deadline, const char **why) {
    const unsigned char *p = buf;
    while (n > 0) {
        struct pollfd pf = {.fd = fd, .events = POLLOUT};
        int r = poll(&pf, 1, ms_left(deadline));
        if (r == 0) { *why = "timed out"; return -1; }
        if (r < 0) { if (errno == EINTR) continue; *why = strerror(errno); return -1; }
        ssize_t put = send(fd, p, n, MSG_NOSIGNAL);
        if (put < 0) { if (errno == EINTR || errno == EAGAIN) continue; *why = strerror(errno); return -1; }
        p += put;
        n -= (size_t)put;
    }
    return 0;
}

static void set_nonblocking(int fd, bool on) {
    int fl = fcntl(fd, F_GETFL, 0);
    fcntl(fd, F_SETFL, on ? (fl | O_NONBLOCK) : (fl & ~O_NONBLOCK));
}

static bool is_loopback(const char *addr) {
    return !strncmp(addr, "127.", 4) || !strcmp(addr, "localhost");
}

static int serve(const char *addr, int port, int world_size, const void *blob, size_t len,
                 double deadline, MpError *err) {
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    if (lfd < 0) return mp_fail(err, "rendezvous: socket: %s", strerror(errno));
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(is_loopback(addr) ? INADDR_LOOPBACK : INADDR_ANY);
    if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) || listen(lfd, world_size)) {
        int e = errno;
        close(lfd);
        return mp_fail(err, "rendezvous: rank 0 cannot listen on port %d (MASTER_PORT): %s", port, strerror(e));
    }
    int peers = world_size - 1;
    int *fds = malloc(sizeof(int) * (size_t)world_size);
    if (!fds) { close(lfd); return mp_fail(err, "rendezvous: out of memory"); }
    for (int i = 0; i < world_size; i++) fds[i] = -1;
    int arrived = 0, rc = 0;
    const char *why = NULL;
    while (arrived < peers) {
        struct pollfd pf = {.fd = lfd, .events = POLLIN};
        int r = poll(&pf, 1, ms_left(deadline));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            char missing[256] = "";
            int used = 0;
            for (int i = 1; i < world_size && used < (int)sizeof missing - 16; i++)
                if (fds[i] < 0) used += snprintf(missing + used, sizeof missing - (size_t)used, "%s%d", used ? "," : "", i);
            rc = mp_fail(err, "rendezvous: rank 0 waited on port %d and %d of %d rank(s) never arrived (missing: %s)",
                         port, peers - arrived, peers, missing);
            break;
        }
        int fd = accept(lfd, NULL, NULL);
        if (fd < 0) continue;
        unsigned char hello[12];
        if (read_full(fd, hello, sizeof hello, deadline, &why)) { close(fd); continue; }
        uint32_t magic = get_u32(hello), ws = get_u32(hello + 4), rank = get_u32(hello + 8);
        if (magic != RV_MAGIC) { close(fd); continue; }   /* a stranger on the port */
        if ((int)ws != world_size) {
            close(fd);
            rc = mp_fail(err, "rendezvous: rank %u says WORLD_SIZE=%u, rank 0 has %d", rank, ws, world_size);
            break;
        }
        if (rank < 1 || (int)rank >= world_size || fds[rank] >= 0) {
            close(fd);
            rc = mp_fail(err, "rendezvous: rank %u arrived twice or is out of range (WORLD_SIZE=%d)", rank, world_size);
            break;
        }
        fds[rank] = fd;
        arrived++;
    }
    close(lfd);
    unsigned char head[8];
    put_u32(head, RV_MAGIC);
    put_u32(head + 4, (uint32_t)len);
    for (int i = 1; i < world_size && rc == 0; i++) {
        if (write_full(fds[i], head, sizeof head, deadline, &why) ||
            write_full(fds[i], blob, len, deadline, &why))
            rc = mp_fail(err, "rendezvous: sending the id to rank %d: %s", i, why);
    }
    for (int i = 1; i < world_size; i++)
        if (fds[i] >= 0) close(fds[i]);
    free(fds);
    return rc;
}

/* One connection attempt bounded by the deadline; returns fd or -1 (errno set). */
static int try_connect(const struct addrinfo *ai, double deadline) {
    int fd = socket(ai->ai_family, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    set_nonblocking(fd, true);
    int r = connect(fd, ai->ai_addr, ai->ai_addrlen);
    if (r < 0 && errno == EINPROGRESS) {
        struct pollfd pf = {.fd = fd, .events = POLLOUT};
        int p = poll(&pf, 1, ms_left(deadline));
        if (p <= 0) { close(fd); errno = ETIMEDOUT; return -1; }
        int soerr = 0;
        socklen_t sl = sizeof soerr;
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
        if (soerr) { close(fd); errno = soerr; return -1; }
    } else if (r < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    set_nonblocking(fd, false);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static int join(const char *addr, int port, int rank, int world_size, void *blob, size_t len,
                double deadline, MpError *err) {
    char port_s[16];
    snprintf(port_s, sizeof port_s, "%d", port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    int g = getaddrinfo(addr, port_s, &hints, &res);
    if (g) return mp_fail(err, "MASTER_ADDR: cannot resolve '%s': %s", addr, gai_strerror(g));
    int fd = -1, last_errno = 0;
    while (fd < 0 && now_s() < deadline) {
        for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
            fd = try_connect(ai, deadline);
            if (fd < 0) last_errno = errno;
        }
        if (fd < 0) {
            struct timespec t = {.tv_sec = 0, .tv_nsec = 50 * 1000 * 1000};   /* retry every 50 ms */
            nanosleep(&t, NULL);
        }
    }
    freeaddrinfo(res);
    if (fd < 0)
        return mp_fail(err, "rendezvous: rank %d could not reach rank 0 at %s:%d: %s", rank, addr, port,
                       strerror(last_errno ? last_errno : ETIMEDOUT));
    unsigned char hello[12], head[8];
    put_u32(hello, RV_MAGIC);
    put_u32(hello + 4, (uint32_t)world_size);
    put_u32(hello + 8, (uint32_t)rank);
    const char *why = NULL;
    int rc = 0;
    if (write_full(fd, hello, sizeof hello, deadline, &why) || read_full(fd, head, sizeof head, deadline, &why))
        rc = mp_fail(err, "rendezvous: rank %d talking to rank 0 at %s:%d: %s", rank, addr, port, why);
    else if (get_u32(head) != RV_MAGIC || get_u32(head + 4) != (uint32_t)len)
        rc = mp_fail(err, "rendezvous: rank %d got a bad reply from %s:%d (another program on MASTER_PORT?)",
                     rank, addr, port);
    else if (read_full(fd, blob, len, deadline, &why))
        rc = mp_fail(err, "rendezvous: rank %d receiving the id: %s", rank, why);
    close(fd);
    return rc;
}

int rendezvous_broadcast(const char *addr, int port, int rank, int world_size, void *blob,
                         size_t len, double timeout_s, MpError *err) {
    if (world_size < 1 || rank < 0 || rank >= world_size)
        return mp_fail(err, "rendezvous: rank %d outside 0..%d", rank, world_size - 1);
    if (len == 0 || len > RENDEZVOUS_MAX_BLOB)
        return mp_fail(err, "rendezvous: blob of %zu bytes (1..%d)", len, RENDEZVOUS_MAX_BLOB);
    if (port < 1 || port > 65535) return mp_fail(err, "MASTER_PORT: %d is not a TCP port", port);
    if (world_size == 1) return 0;
    double deadline = now_s() + timeout_s;
    if (rank == 0) return serve(addr, port, world_size, blob, len, deadline, err);
    return join(addr, port, rank, world_size, blob, len, deadline, err);
}
