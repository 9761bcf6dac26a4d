/* hub_sub: C subscribers for bench/hub_fanout.py (one process, many connections).
 *
 * Usage: hub_sub [--deflate] PHASES TARGET [TARGET ...]
 *   --deflate  offer permessage-deflate in the handshake (the hub's pushes
 *              stay uncompressed frames, which RFC 7692 allows: a frame with
 *              RSV1 set makes this client close the connection)
 *   PHASES  comma-separated phase names ("pf0,pf1,wf0,wf1,wt0")
 *   TARGET  PORT:COUNT:SAMPLE: open COUNT connections to the server on
 *           127.0.0.1:PORT (ws13 serve, or bench/picows_broadcast.py), each
 *           subscribed to "ticker.bench"; SAMPLE of them (spread evenly over
 *           the opening order; COUNT or more: every one) measure latency, all
 *           count copies. Targets open one after the other, in order.
 *
 * Each connection speaks just enough ws13.hub.v1: the handshake (subprotocol
 * ws13.hub.v1), the server's "welcome", a masked "subscribe" request, its
 * "reply"; then every text frame starting with {"op":"message" is a copy: its
 * phase is the string after "data":{"p":" and, on sampled connections, its
 * latency is the receive time (CLOCK_REALTIME, taken once per read) minus the
 * "t": seconds the publisher stamped. Pings get their masked pong; a Close
 * frame or EOF closes the connection (counted as closed).
 *
 * One epoll loop, level-triggered, reads every socket as soon as it has data:
 * under load a read simply takes several messages at once, so the client keeps
 * up without sweeps. stdin is in the same loop: "collect" prints one JSON line
 * of results (the same shape as bench/hub_client.py's: counts, per-phase
 * latency histograms with bins int(log1p(microseconds) * 40), closed, cpu =
 * this process's utime + stime), "quit" or EOF ends the process. Once every
 * connection is subscribed it prints {"ready": N, "sampled": S}; a failure
 * prints {"error": "..."} and exits 1. Setup has a 300 s deadline.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BINS 800
#define BINS_PER_E 40.0
#define MAX_PHASES 128
#define MAX_FRAME (1 << 20)
#define READ_SIZE (1 << 18)
#define INFLIGHT 100          /* connections in setup at once */
#define SETUP_SECONDS 300

enum { CONNECTING, HTTP, WELCOME, REPLY, LIVE, CLOSED };

typedef struct {
    int fd;
    int port;
    int state;
    int sampled;
    char *rest;      /* an incomplete frame (or HTTP response) carried to the next read */
    size_t rest_len;
} conn_t;

typedef struct {
    char name[32];
    size_t len;
    long long count;
    long long bins[BINS];
    double max;
} phase_t;

static phase_t phases[MAX_PHASES];
static int nphases;
static long long closed_count;
static char readbuf[READ_SIZE];
static int deflate;

static void fail(const char *fmt, const char *arg, int opened) {
    char message[512];
    snprintf(message, sizeof message, fmt, arg);
    printf("{\"error\": \"%d subscribers connected, then: %s\"}\n", opened, message);
    fflush(stdout);
    exit(1);
}

static double now_realtime(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* A masked client frame: at most 125 bytes of payload here. */
static void send_frame(int fd, int opcode, const char *payload, size_t n) {
    unsigned char frame[6 + 125];
    uint32_t key = (uint32_t)rand() ^ ((uint32_t)rand() << 16);
    unsigned char *k = (unsigned char *)&key;
    if (n > 125) n = 125;
    frame[0] = 0x80 | opcode;
    frame[1] = 0x80 | (unsigned char)n;
    memcpy(frame + 2, k, 4);
    for (size_t i = 0; i < n; i++) frame[6 + i] = payload[i] ^ k[i & 3];
    /* A few bytes on a socket the server reads: a short or refused send only
       happens when the connection is failing anyway. */
    (void)!send(fd, frame, 6 + n, MSG_NOSIGNAL);
}

static void on_message(conn_t *c, const char *p, size_t n, double now) {
    static const char data_key[] = "\"data\":{\"p\":\"";
    const char *d = memmem(p, n, data_key, sizeof data_key - 1);
    if (d == NULL) return;
    d += sizeof data_key - 1;
    const char *end = p + n;
    const char *q = memchr(d, '"', end - d);
    if (q == NULL) return;
    size_t len = q - d;
    phase_t *ph = NULL;
    for (int i = 0; i < nphases; i++)
        if (phases[i].len == len && memcmp(phases[i].name, d, len) == 0) { ph = &phases[i]; break; }
    if (ph == NULL) return;
    ph->count++;
    if (!c->sampled) return;
    const char *t = memmem(q, end - q, "\"t\":", 4);
    if (t == NULL) return;
    double latency = now - strtod(t + 4, NULL);
    double micros = latency * 1e6;
    int index = micros > 0 ? (int)(log1p(micros) * BINS_PER_E) : 0;
    ph->bins[index < BINS ? index : BINS - 1]++;
    if (latency > ph->max) ph->max = latency;
}

static void close_conn(int ep, conn_t *c) {
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c->rest);
    c->rest = NULL;
    c->rest_len = 0;
    if (c->state == LIVE) closed_count++;
    c->state = CLOSED;
}

static const char SUBSCRIBE[] = "{\"op\":\"subscribe\",\"id\":1,\"channel\":\"ticker.bench\"}";

/* Parse the complete frames in data[0:n]; return the bytes consumed, or -1 to close. */
static long parse_frames(conn_t *c, const unsigned char *data, size_t n, double now) {
    size_t pos = 0;
    while (n - pos >= 2) {
        int opcode = data[pos] & 0x0F;
        uint64_t length = data[pos + 1] & 0x7F;
        size_t start = pos + 2;
        if (length == 126) {
            if (n - pos < 4) break;
            length = ((uint64_t)data[pos + 2] << 8) | data[pos + 3];
            start = pos + 4;
        } else if (length == 127) {
            if (n - pos < 10) break;
            length = 0;
            for (int i = 2; i < 10; i++) length = (length << 8) | data[pos + i];
            start = pos + 10;
        }
        if (length > MAX_FRAME) return -1;
        if (start + length > n) break;
        const char *payload = (const char *)data + start;
        if (data[pos] & 0x70) return -1; /* RSV bits: a compressed frame isn't expected */
        if (opcode == 1) {
            if (c->state == LIVE) {
                if (length > 14 && memcmp(payload, "{\"op\":\"message\"", 15) == 0)
                    on_message(c, payload, length, now);
            } else if (c->state == WELCOME && memmem(payload, length, "\"op\":\"welcome\"", 14)) {
                send_frame(c->fd, 1, SUBSCRIBE, sizeof SUBSCRIBE - 1);
                c->state = REPLY;
            } else if (c->state == REPLY && memmem(payload, length, "\"op\":\"reply\"", 12)) {
                c->state = LIVE;
            } else if (memmem(payload, length, "\"op\":\"error\"", 12)) {
                return -1;
            }
        } else if (opcode == 9) {
            send_frame(c->fd, 0xA, payload, length);
        } else if (opcode == 8) {
            return -1;
        }
        pos = start + length;
    }
    return (long)pos;
}

/* Read what the socket has; return 0, or -1 when the connection ended. */
static int read_conn(conn_t *c) {
    ssize_t got = recv(c->fd, readbuf, READ_SIZE, 0);
    if (got < 0) return (errno == EAGAIN || errno == EINTR) ? 0 : -1;
    if (got == 0) return -1;
    double now = now_realtime();
    const unsigned char *data = (const unsigned char *)readbuf;
    size_t n = (size_t)got;
    char *joined = NULL;
    if (c->rest_len) {
        joined = malloc(c->rest_len + n);
        memcpy(joined, c->rest, c->rest_len);
        memcpy(joined + c->rest_len, readbuf, n);
        data = (const unsigned char *)joined;
        n += c->rest_len;
        free(c->rest);
        c->rest = NULL;
        c->rest_len = 0;
    }
    size_t pos = 0;
    if (c->state == HTTP) {
        const unsigned char *end = memmem(data, n, "\r\n\r\n", 4);
        if (end == NULL) {
            c->rest = malloc(n);
            memcpy(c->rest, data, n);
            c->rest_len = n;
            free(joined);
            return 0;
        }
        if (n < 12 || memcmp(data, "HTTP/1.1 101", 12) != 0) {
            free(joined);
            return -2;
        }
        pos = (size_t)(end - data) + 4;
        c->state = WELCOME;
    }
    long used = parse_frames(c, data + pos, n - pos, now);
    if (used < 0) {
        free(joined);
        return -1;
    }
    pos += (size_t)used;
    if (pos < n) {
        c->rest_len = n - pos;
        c->rest = malloc(c->rest_len);
        memcpy(c->rest, data + pos, c->rest_len);
    }
    free(joined);
    return 0;
}

static void start_connect(int ep, conn_t *c, int index) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (fd < 0) fail("socket: %s", strerror(errno), index);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(c->port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0 && errno != EINPROGRESS)
        fail("connect: %s", strerror(errno), index);
    c->fd = fd;
    c->state = CONNECTING;
    struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
}

static void send_handshake(int ep, conn_t *c, int opened) {
    int error = 0;
    socklen_t len = sizeof error;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &error, &len);
    if (error) fail("connect: %s", strerror(error), opened);
    unsigned char nonce[16];
    for (int i = 0; i < 16; i++) nonce[i] = (unsigned char)rand();
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char key[25];
    for (int i = 0, j = 0; i < 15; i += 3, j += 4) {
        uint32_t v = (nonce[i] << 16) | (nonce[i + 1] << 8) | nonce[i + 2];
        key[j] = b64[(v >> 18) & 63]; key[j + 1] = b64[(v >> 12) & 63];
        key[j + 2] = b64[(v >> 6) & 63]; key[j + 3] = b64[v & 63];
    }
    uint32_t v = nonce[15] << 16;
    key[20] = b64[(v >> 18) & 63]; key[21] = b64[(v >> 12) & 63];
    key[22] = '='; key[23] = '='; key[24] = 0;
    char request[640];
    int n = snprintf(request, sizeof request,
                     "GET /hub HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
                     "Sec-WebSocket-Protocol: ws13.hub.v1\r\n%s\r\n", c->port, key,
                     deflate ? "Sec-WebSocket-Extensions: permessage-deflate; "
                               "client_max_window_bits\r\n" : "");
    if (send(c->fd, request, n, MSG_NOSIGNAL) != n) fail("handshake: %s", strerror(errno), opened);
    c->state = HTTP;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static void print_results(void) {
    struct rusage usage;
    getrusage(RUSAGE_SELF, &usage);
    double cpu = usage.ru_utime.tv_sec + usage.ru_utime.tv_usec / 1e6 +
                 usage.ru_stime.tv_sec + usage.ru_stime.tv_usec / 1e6;
    printf("{\"counts\": {");
    for (int i = 0, first = 1; i < nphases; i++) {
        if (!phases[i].count) continue;
        printf("%s\"%s\": %lld", first ? "" : ", ", phases[i].name, phases[i].count);
        first = 0;
    }
    printf("}, \"phases\": {");
    for (int i = 0, first = 1; i < nphases; i++) {
        long long sampled = 0;
        for (int b = 0; b < BINS; b++) sampled += phases[i].bins[b];
        if (!sampled) continue;
        printf("%s\"%s\": {\"count\": %lld, \"max\": %.6f, \"bins\": {", first ? "" : ", ",
               phases[i].name, sampled, phases[i].max);
        first = 0;
        for (int b = 0, firstbin = 1; b < BINS; b++) {
            if (!phases[i].bins[b]) continue;
            printf("%s\"%d\": %lld", firstbin ? "" : ", ", b, phases[i].bins[b]);
            firstbin = 0;
        }
        printf("}}");
    }
    printf("}, \"closed\": %lld, \"cpu\": %.3f}\n", closed_count, cpu);
    fflush(stdout);
}

/* Handle what arrived on stdin; return 0 to go on, 1 to quit. */
static int read_commands(void) {
    static char line[256];
    static size_t used;
    ssize_t got = read(0, line + used, sizeof line - 1 - used);
    if (got <= 0) return 1;
    used += (size_t)got;
    char *newline;
    while ((newline = memchr(line, '\n', used)) != NULL) {
        *newline = 0;
        if (strcmp(line, "collect") == 0) print_results();
        else return 1;
        size_t taken = (size_t)(newline - line) + 1;
        memmove(line, line + taken, used - taken);
        used -= taken;
    }
    if (used == sizeof line - 1) return 1;
    return 0;
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "--deflate") == 0) {
        deflate = 1;
        argv++;
        argc--;
    }
    if (argc < 3) {
        fprintf(stderr, "usage: hub_sub [--deflate] PHASES PORT:COUNT:SAMPLE [PORT:COUNT:SAMPLE ...]\n");
        return 2;
    }
    char *phase_list = strdup(argv[1]);
    for (char *name = strtok(phase_list, ","); name && nphases < MAX_PHASES; name = strtok(NULL, ",")) {
        snprintf(phases[nphases].name, sizeof phases[nphases].name, "%s", name);
        phases[nphases].len = strlen(phases[nphases].name);
        nphases++;
    }
    int count = 0;
    int ports[argc], counts[argc];
    long long samples[argc];
    for (int t = 2; t < argc; t++) {
        if (sscanf(argv[t], "%d:%d:%lld", &ports[t], &counts[t], &samples[t]) != 3 ||
            counts[t] < 0 || samples[t] < 0) {
            fprintf(stderr, "hub_sub: bad target %s (PORT:COUNT:SAMPLE)\n", argv[t]);
            return 2;
        }
        count += counts[t];
    }
    struct rlimit limit;
    getrlimit(RLIMIT_NOFILE, &limit);
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
    srand((unsigned)getpid() ^ (unsigned)time(NULL));

    conn_t *conns = calloc(count ? count : 1, sizeof *conns);
    int ep = epoll_create1(0);
    struct epoll_event stdin_ev = {.events = EPOLLIN, .data.ptr = NULL};
    int next = 0, live = 0, inflight = 0, ready_sent = 0, sampled = 0;
    for (int t = 2, i = 0; t < argc; t++) {
        long long n = counts[t], sample = samples[t] < n ? samples[t] : n;
        for (long long j = 0; j < n; j++, i++) {
            conns[i].port = ports[t];
            /* as bench/hub_fanout.py's sampled(): spread evenly over the order */
            conns[i].sampled = j * sample / n != (j + 1) * sample / n;
            sampled += conns[i].sampled;
        }
    }
    time_t deadline = time(NULL) + SETUP_SECONDS;
    struct epoll_event events[1024];
    for (;;) {
        if (!ready_sent) {
            while (next < count && inflight < INFLIGHT) {
                start_connect(ep, &conns[next], live);
                next++;
                inflight++;
            }
            if (live == count) {
                printf("{\"ready\": %d, \"sampled\": %d}\n", live, sampled);
                fflush(stdout);
                ready_sent = 1;
                epoll_ctl(ep, EPOLL_CTL_ADD, 0, &stdin_ev);
            } else if (time(NULL) > deadline) {
                fail("%s", "setup took more than 300 s", live);
            }
        }
        int n = epoll_wait(ep, events, 1024, ready_sent ? -1 : 1000);
        if (n < 0) {
            if (errno == EINTR) continue;
            fail("epoll_wait: %s", strerror(errno), live);
        }
        for (int i = 0; i < n; i++) {
            conn_t *c = events[i].data.ptr;
            if (c == NULL) {
                if (read_commands()) return 0;
                continue;
            }
            if (c->state == CLOSED) continue;
            if (c->state == CONNECTING) {
                send_handshake(ep, c, live);
                continue;
            }
            int before = c->state;
            int status = read_conn(c);
            if (status == -2) fail("%s", "handshake refused (no 101)", live);
            if (status < 0) {
                if (before != LIVE) fail("%s", "connection lost during setup", live);
                close_conn(ep, c);
                continue;
            }
            if (before != LIVE && c->state == LIVE) {
                live++;
                inflight--;
            }
        }
    }
}
