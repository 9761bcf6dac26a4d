/*
 * wsload: many idle WebSocket connections from one process, for
 * bench/connections.py.
 *
 *   cc -O2 -o wsload wsload.c -lz
 *   wsload -p PORT -n 19000 -b 127.0.0.2 [-a 127.0.0.1] [-P /echo] [-c 200]
 *          [-r 0] [-d] [-s 48] [-t 300] [-e 60] [-T 1800]
 *
 * Opens -n connections to -a:-p from source address -b (bound before
 * connect, so that each client process has its own ephemeral ports), at most
 * -c in their opening handshake at once and, with -r, at most -r new ones per
 * second. Each sends the HTTP upgrade (a fresh Sec-WebSocket-Key), checks the
 * 101 and its Sec-WebSocket-Accept, sends one masked text message of -s bytes
 * and checks the echo; it then stays open and idle, answering the server's
 * pings. With -d it offers "permessage-deflate; client_max_window_bits" like a
 * browser, compresses what it sends (a fresh DEFLATE stream per message, valid
 * with context takeover) and inflates the echoes (the connection's earlier
 * echoes as the dictionary, so context takeover is followed exactly).
 *
 * Commands on stdin, one a line:
 *   echo   one more message on every open connection; reports how many
 *          answered, and when (waits at most -e seconds)
 *   close  sends Close (1000) on every connection, waits for the server to
 *          close them (at most -e seconds), reports, exits
 * EOF on stdin, SIGTERM, SIGINT or -T seconds of life mean "close". Every
 * report is one JSON object on one line of stdout. Exit status 0, or 2 for a
 * bad argument, 1 for a failure to start (epoll, memory).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define BUF_SIZE 1024 /* the 101 and any frame the server sends must fit */
#define MAX_MESSAGE 512
#define HISTORY 4096 /* echoes kept as the inflate dictionary (deflate only) */

enum state { CONNECTING, UPGRADING, ECHOING, IDLE, CLOSING, DONE };

struct conn {
    int fd;
    uint8_t state;
    uint8_t deflate;     /* permessage-deflate negotiated */
    uint8_t server_bits; /* the server's window, for the dictionary */
    uint8_t waiting;     /* an echo is due */
    uint16_t len;        /* bytes in buf */
    uint16_t hist_len;
    uint32_t round;
    uint64_t sent_ns;
    char key[25];
    char accept[29];
    unsigned char *hist; /* deflate only */
    unsigned char buf[BUF_SIZE];
};

/* -- options and counters ---------------------------------------------- */

static const char *host = "127.0.0.1", *source = NULL, *path = "/echo";
static int port = 0, total = 0, concurrency = 200, offer_deflate = 0, msg_size = 48;
static double rate = 0, open_timeout = 300, echo_timeout = 60, lifetime = 1800;

static struct conn *conns;
static int epfd, started, in_handshake, opened, failed, closed_by_server, pings;
static int round_no, round_sent, round_answered, closing_all;
static uint64_t *latencies;
static int n_latencies;
static volatile sig_atomic_t stop_signal;
static z_stream deflater, inflater;
static uint64_t xs = 88172645463325252ULL;

#define N_REASONS 9
static const char *reason_names[N_REASONS] = {
    "connect", "refused_status", "bad_accept", "bad_echo", "closed",
    "protocol", "timeout", "write", "bind"};
static int reasons[N_REASONS];
enum { R_CONNECT, R_STATUS, R_ACCEPT, R_ECHO, R_CLOSED, R_PROTOCOL, R_TIMEOUT, R_WRITE, R_BIND };
static int first_errno;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static uint64_t rnd(void) {
    xs ^= xs << 13;
    xs ^= xs >> 7;
    xs ^= xs << 17;
    return xs;
}

/* -- SHA-1 and base64, for Sec-WebSocket-Accept ------------------------- */

static uint32_t rol(uint32_t x, int n) { return (x << n) | (x >> (32 - n)); }

static void sha1(const unsigned char *data, size_t len, unsigned char out[20]) {
    uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
    unsigned char block[128];
    size_t full = len / 64 * 64, rest = len - full, tail_len;
    for (size_t off = 0; off <= full; off += 64) {
        const unsigned char *p;
        if (off < full) {
            p = data + off;
        } else {
            /* The last partial block, the 0x80, the bit length: 1 or 2 blocks. */
            memset(block, 0, sizeof block);
            memcpy(block, data + full, rest);
            block[rest] = 0x80;
            tail_len = rest + 9 <= 64 ? 64 : 128;
            uint64_t bits = (uint64_t)len * 8;
            for (int i = 0; i < 8; i++) block[tail_len - 1 - i] = (unsigned char)(bits >> (8 * i));
            p = block;
        }
        int blocks = off < full ? 1 : (int)(tail_len / 64);
        for (int b = 0; b < blocks; b++, p += 64) {
            uint32_t w[80], a = h[0], bb = h[1], c = h[2], d = h[3], e = h[4];
            for (int i = 0; i < 16; i++)
                w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
                       (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
            for (int i = 16; i < 80; i++) w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
            for (int i = 0; i < 80; i++) {
                uint32_t f, k;
                if (i < 20) f = (bb & c) | (~bb & d), k = 0x5A827999;
                else if (i < 40) f = bb ^ c ^ d, k = 0x6ED9EBA1;
                else if (i < 60) f = (bb & c) | (bb & d) | (c & d), k = 0x8F1BBCDC;
                else f = bb ^ c ^ d, k = 0xCA62C1D6;
                uint32_t t = rol(a, 5) + f + e + k + w[i];
                e = d, d = c, c = rol(bb, 30), bb = a, a = t;
            }
            h[0] += a, h[1] += bb, h[2] += c, h[3] += d, h[4] += e;
        }
    }
    for (int i = 0; i < 20; i++) out[i] = (unsigned char)(h[i / 4] >> (24 - 8 * (i % 4)));
}

static void base64(const unsigned char *in, size_t len, char *out) {
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < len ? (uint32_t)in[i + 1] << 8 : 0) |
                     (i + 2 < len ? in[i + 2] : 0);
        out[o++] = tab[v >> 18 & 63];
        out[o++] = tab[v >> 12 & 63];
        out[o++] = i + 1 < len ? tab[v >> 6 & 63] : '=';
        out[o++] = i + 2 < len ? tab[v & 63] : '=';
    }
    out[o] = 0;
}

static void make_key(struct conn *c) {
    unsigned char raw[16], digest[20];
    char joined[64];
    for (int i = 0; i < 16; i++) raw[i] = (unsigned char)rnd();
    base64(raw, 16, c->key);
    snprintf(joined, sizeof joined, "%s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", c->key);
    sha1((const unsigned char *)joined, strlen(joined), digest);
    base64(digest, 20, c->accept);
}

/* -- connections --------------------------------------------------------- */

static void finish(struct conn *c, int reason) {
    if (c->state == DONE) return;
    if (reason >= 0) {
        reasons[reason]++;
        failed++;
        if (!first_errno && errno) first_errno = errno;
    }
    if (c->state == CONNECTING || c->state == UPGRADING || c->state == ECHOING) in_handshake--;
    if (c->waiting) {
        c->waiting = 0;
    }
    if (c->state == IDLE && reason >= 0) opened--;
    c->state = DONE;
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
    free(c->hist);
    c->hist = NULL;
}

static int send_all(struct conn *c, const unsigned char *data, size_t len) {
    ssize_t n = send(c->fd, data, len, MSG_NOSIGNAL);
    if (n != (ssize_t)len) {
        /* An idle loopback socket takes a small frame whole: a short
           write means the server stopped reading; count it. */
        finish(c, R_WRITE);
        return -1;
    }
    return 0;
}

/* A masked frame from the client: opcode, payload, RSV1 for compressed. */
static int send_frame(struct conn *c, int opcode, int rsv1, const unsigned char *payload,
                      size_t len) {
    unsigned char frame[16 + MAX_MESSAGE + 64];
    size_t h = 0;
    if (len > MAX_MESSAGE + 64) return -1;
    frame[h++] = (unsigned char)(0x80 | (rsv1 ? 0x40 : 0) | opcode);
    if (len < 126) {
        frame[h++] = (unsigned char)(0x80 | len);
    } else {
        frame[h++] = 0x80 | 126;
        frame[h++] = (unsigned char)(len >> 8);
        frame[h++] = (unsigned char)len;
    }
    uint32_t mask = (uint32_t)rnd();
    memcpy(frame + h, &mask, 4);
    unsigned char *m = frame + h;
    h += 4;
    for (size_t i = 0; i < len; i++) frame[h + i] = payload[i] ^ m[i & 3];
    return send_all(c, frame, h + len);
}

static void make_message(struct conn *c, unsigned char *out) {
    int n = snprintf((char *)out, MAX_MESSAGE, "{\"conn\": %ld, \"round\": %u, \"pad\": \"",
                     (long)(c - conns), c->round);
    for (; n < msg_size - 2; n++) out[n] = (unsigned char)('a' + ((unsigned)n + c->round) % 26);
    out[n++] = '"';
    out[n++] = '}';
}

static int send_message(struct conn *c) {
    unsigned char text[MAX_MESSAGE];
    make_message(c, text);
    c->sent_ns = now_ns();
    c->waiting = 1;
    if (!c->deflate) return send_frame(c, 1, 0, text, (size_t)msg_size);
    /* A fresh DEFLATE stream per message: it refers to nothing before it,
       so it is valid whatever the server's decompressor remembers. */
    unsigned char packed[MAX_MESSAGE + 64];
    deflateReset(&deflater);
    deflater.next_in = text;
    deflater.avail_in = (uInt)msg_size;
    deflater.next_out = packed;
    deflater.avail_out = sizeof packed;
    if (deflate(&deflater, Z_SYNC_FLUSH) != Z_OK || deflater.avail_in) return -1;
    size_t len = sizeof packed - deflater.avail_out;
    if (len >= 4) len -= 4; /* section 7.2.1: drop 00 00 ff ff */
    return send_frame(c, 1, 1, packed, len);
}

static void start_connection(struct conn *c) {
    struct sockaddr_in to = {0}, from = {0};
    int one = 1;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    started++;
    in_handshake++;
    c->state = CONNECTING;
    if (c->fd < 0) {
        finish(c, R_CONNECT);
        return;
    }
    to.sin_family = AF_INET;
    to.sin_port = htons((uint16_t)port);
    inet_pton(AF_INET, host, &to.sin_addr);
    if (source) {
        from.sin_family = AF_INET;
        inet_pton(AF_INET, source, &from.sin_addr);
        /* The port is chosen at connect(), per destination: more ports. */
        setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        if (bind(c->fd, (struct sockaddr *)&from, sizeof from) < 0) {
            finish(c, R_BIND);
            return;
        }
    }
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(c->fd, (struct sockaddr *)&to, sizeof to) < 0 && errno != EINPROGRESS) {
        finish(c, R_CONNECT);
        return;
    }
    struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN, .data.u32 = (uint32_t)(c - conns)};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0) finish(c, R_CONNECT);
}

static void send_upgrade(struct conn *c) {
    char request[512];
    make_key(c);
    int n = snprintf(request, sizeof request,
                     "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\n%s\r\n",
                     path, host, port, c->key,
                     offer_deflate ? "Sec-WebSocket-Extensions: permessage-deflate; "
                                     "client_max_window_bits\r\n"
                                   : "");
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)(c - conns)};
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
    c->state = UPGRADING;
    send_all(c, (unsigned char *)request, (size_t)n);
}

/* The value of header `name` in the response head, or NULL. */
static const char *header(const char *head, const char *name, size_t *len) {
    size_t nl = strlen(name);
    for (const char *p = strstr(head, "\r\n"); p && p[2] != '\r'; p = strstr(p + 2, "\r\n")) {
        if (strncasecmp(p + 2, name, nl) == 0 && p[2 + nl] == ':') {
            const char *v = p + 3 + nl;
            while (*v == ' ') v++;
            const char *end = strstr(v, "\r\n");
            *len = (size_t)(end - v);
            return v;
        }
    }
    return NULL;
}

/* Returns bytes consumed by the head, 0 if incomplete, -1 on failure. */
static int handle_upgrade(struct conn *c) {
    c->buf[c->len < BUF_SIZE ? c->len : BUF_SIZE - 1] = 0;
    char *end = strstr((char *)c->buf, "\r\n\r\n");
    if (!end) {
        if (c->len >= BUF_SIZE - 1) finish(c, R_PROTOCOL);
        return 0;
    }
    end[2] = 0; /* the head, with its last CRLF */
    if (strncmp((char *)c->buf, "HTTP/1.1 101 ", 13) != 0) {
        errno = 0;
        finish(c, R_STATUS);
        return -1;
    }
    size_t len;
    const char *accept = header((char *)c->buf, "Sec-WebSocket-Accept", &len);
    if (!accept || len != 28 || memcmp(accept, c->accept, 28) != 0) {
        errno = 0;
        finish(c, R_ACCEPT);
        return -1;
    }
    const char *ext = header((char *)c->buf, "Sec-WebSocket-Extensions", &len);
    if (ext) {
        if (!offer_deflate || strncmp(ext, "permessage-deflate", 18) != 0) {
            errno = 0;
            finish(c, R_PROTOCOL);
            return -1;
        }
        c->deflate = 1;
        c->server_bits = 15;
        const char *bits = strstr(ext, "server_max_window_bits=");
        if (bits && bits < ext + len) c->server_bits = (uint8_t)atoi(bits + 23);
        c->hist = malloc(HISTORY);
    }
    int consumed = (int)(end + 4 - (char *)c->buf);
    c->state = ECHOING;
    return consumed;
}

static void record_latency(struct conn *c) {
    latencies[n_latencies++] = now_ns() - c->sent_ns;
}

/* A whole text frame from the server: must be this connection's echo. */
static void handle_text(struct conn *c, int rsv1, unsigned char *payload, size_t len) {
    unsigned char expected[MAX_MESSAGE], plain[MAX_MESSAGE + 1];
    if (!c->waiting) {
        errno = 0;
        finish(c, R_ECHO);
        return;
    }
    make_message(c, expected);
    if (rsv1) {
        if (!c->deflate) {
            finish(c, R_PROTOCOL);
            return;
        }
        /* The earlier echoes are the server compressor's window. */
        unsigned char tail[4] = {0, 0, 0xff, 0xff};
        inflateReset2(&inflater, -c->server_bits);
        if (c->hist_len) inflateSetDictionary(&inflater, c->hist, c->hist_len);
        inflater.next_out = plain;
        inflater.avail_out = sizeof plain;
        inflater.next_in = payload;
        inflater.avail_in = (uInt)len;
        int rc = inflate(&inflater, Z_SYNC_FLUSH);
        if (rc == Z_OK || rc == Z_BUF_ERROR) {
            inflater.next_in = tail;
            inflater.avail_in = 4;
            rc = inflate(&inflater, Z_SYNC_FLUSH);
        }
        if ((rc != Z_OK && rc != Z_BUF_ERROR) || inflater.avail_in) {
            errno = 0;
            finish(c, R_ECHO);
            return;
        }
        len = sizeof plain - inflater.avail_out;
        payload = plain;
    }
    if (len != (size_t)msg_size || memcmp(payload, expected, len) != 0) {
        errno = 0;
        finish(c, R_ECHO);
        return;
    }
    if (c->deflate) {
        /* Keep the last HISTORY bytes of what the server sent. */
        if (c->hist_len + len > HISTORY) {
            size_t drop = c->hist_len + len - HISTORY;
            memmove(c->hist, c->hist + drop, c->hist_len - drop);
            c->hist_len = (uint16_t)(c->hist_len - drop);
        }
        memcpy(c->hist + c->hist_len, payload, len);
        c->hist_len = (uint16_t)(c->hist_len + len);
    }
    c->waiting = 0;
    c->round++;
    if (c->state == ECHOING) {
        c->state = IDLE;
        in_handshake--;
        opened++;
    } else {
        round_answered++;
        record_latency(c);
    }
}

/* Parse whole frames in buf; keep the rest. */
static void handle_frames(struct conn *c, int offset) {
    size_t pos = (size_t)offset;
    while (c->state != DONE) {
        size_t avail = c->len - pos;
        unsigned char *p = c->buf + pos;
        if (avail < 2) break;
        size_t h = 2, len = p[1] & 0x7f;
        if (p[1] & 0x80) { /* a server never masks */
            finish(c, R_PROTOCOL);
            return;
        }
        if (len == 126) {
            if (avail < 4) break;
            len = (size_t)p[2] << 8 | p[3];
            h = 4;
        } else if (len == 127) {
            finish(c, R_PROTOCOL); /* nothing this large is expected */
            return;
        }
        if (h + len > BUF_SIZE) {
            finish(c, R_PROTOCOL);
            return;
        }
        if (avail < h + len) break;
        int opcode = p[0] & 0x0f, fin = p[0] & 0x80, rsv1 = p[0] & 0x40;
        unsigned char *payload = p + h;
        pos += h + len;
        if (opcode == 9) { /* ping: pong with its payload */
            pings++;
            send_frame(c, 10, 0, payload, len);
        } else if (opcode == 10) {
            /* unsolicited pong: nothing to do */
        } else if (opcode == 8) {
            if (c->state == CLOSING) {
                finish(c, -1);
            } else {
                closed_by_server++;
                errno = 0;
                unsigned char code[2] = {0x03, 0xe8};
                send_frame(c, 8, 0, code, 2);
                finish(c, R_CLOSED);
            }
            return;
        } else if (opcode == 1 && fin) {
            handle_text(c, rsv1, payload, len);
        } else {
            errno = 0;
            finish(c, R_PROTOCOL);
            return;
        }
    }
    if (c->state != DONE) {
        memmove(c->buf, c->buf + pos, c->len - pos);
        c->len = (uint16_t)(c->len - pos);
    }
}

static void readable(struct conn *c) {
    for (;;) {
        ssize_t n = recv(c->fd, c->buf + c->len, BUF_SIZE - 1 - c->len, 0);
        if (n > 0) {
            c->len = (uint16_t)(c->len + n);
            int offset = 0;
            if (c->state == UPGRADING) {
                offset = handle_upgrade(c);
                if (offset <= 0) {
                    if (offset == 0 && c->state != DONE && c->len < BUF_SIZE - 1) continue;
                    return;
                }
                if (send_message(c) < 0) return;
            }
            handle_frames(c, offset);
            if (c->state == DONE) return;
            if (c->len >= BUF_SIZE - 1) {
                finish(c, R_PROTOCOL);
                return;
            }
        } else if (n == 0) {
            errno = 0;
            finish(c, c->state == CLOSING ? -1 : R_CLOSED);
            return;
        } else {
            if (errno != EAGAIN && errno != EINTR) finish(c, c->state == CLOSING ? -1 : R_CLOSED);
            return;
        }
    }
}

static void on_event(struct epoll_event *ev) {
    if (ev->data.u32 == UINT32_MAX) return; /* stdin: the main loop reads it */
    struct conn *c = &conns[ev->data.u32];
    if (c->state == DONE) return;
    if (c->state == CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err || (ev->events & (EPOLLERR | EPOLLHUP))) {
            errno = err;
            finish(c, R_CONNECT);
            return;
        }
        send_upgrade(c);
        return;
    }
    readable(c);
}

/* -- the loop ------------------------------------------------------------ */

static void poll_once(int timeout_ms) {
    struct epoll_event events[512];
    int n = epoll_wait(epfd, events, 512, timeout_ms);
    for (int i = 0; i < n; i++) on_event(&events[i]);
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void print_reasons(void) {
    printf("\"failures\": {");
    int first = 1;
    for (int i = 0; i < N_REASONS; i++) {
        if (!reasons[i]) continue;
        printf("%s\"%s\": %d", first ? "" : ", ", reason_names[i], reasons[i]);
        first = 0;
    }
    printf("}, \"first_errno\": %d, \"first_error\": \"%s\"", first_errno,
           first_errno ? strerror(first_errno) : "");
}

static void open_all(void) {
    uint64_t t0 = now_ns(), deadline = t0 + (uint64_t)(open_timeout * 1e9);
    while (!stop_signal) {
        uint64_t t = now_ns();
        if (t > deadline) break;
        double allowed = rate > 0 ? rate * (double)(t - t0) / 1e9 + 1 : total;
        while (started < total && in_handshake < concurrency && started < allowed)
            start_connection(&conns[started]);
        if (started == total && in_handshake == 0) break;
        poll_once(started < total ? 5 : 100);
    }
    for (int i = 0; i < started; i++)
        if (conns[i].state < IDLE) {
            errno = 0;
            finish(&conns[i], R_TIMEOUT);
        }
    printf("{\"event\": \"open\", \"source\": \"%s\", \"requested\": %d, \"opened\": %d, "
           "\"failed\": %d, \"seconds\": %.3f, \"deflate\": %d, ",
           source ? source : "", total, opened, failed, (double)(now_ns() - t0) / 1e9,
           total && conns[0].deflate);
    print_reasons();
    printf("}\n");
    fflush(stdout);
}

static void echo_round(void) {
    uint64_t t0 = now_ns(), deadline = t0 + (uint64_t)(echo_timeout * 1e9);
    round_no++;
    round_sent = round_answered = 0;
    n_latencies = 0;
    int failed_before = failed;
    for (int i = 0; i < total; i++) {
        struct conn *c = &conns[i];
        if (c->state != IDLE) continue;
        if (send_message(c) == 0) round_sent++;
        if ((i & 1023) == 0) poll_once(0); /* answer while sending */
    }
    while (!stop_signal && round_answered < round_sent && now_ns() < deadline) poll_once(50);
    double seconds = (double)(now_ns() - t0) / 1e9;
    qsort(latencies, (size_t)n_latencies, sizeof *latencies, cmp_u64);
    double p50 = n_latencies ? latencies[n_latencies / 2] / 1e6 : 0;
    double p99 = n_latencies ? latencies[(size_t)(n_latencies * 0.99)] / 1e6 : 0;
    double max = n_latencies ? latencies[n_latencies - 1] / 1e6 : 0;
    printf("{\"event\": \"echo\", \"round\": %d, \"sent\": %d, \"answered\": %d, "
           "\"failed\": %d, \"seconds\": %.3f, \"p50_ms\": %.2f, \"p99_ms\": %.2f, "
           "\"max_ms\": %.2f, \"open\": %d, \"pings\": %d, ",
           round_no, round_sent, round_answered, failed - failed_before, seconds, p50, p99,
           max, opened, pings);
    print_reasons();
    printf("}\n");
    fflush(stdout);
}

static void close_all(void) {
    uint64_t t0 = now_ns(), deadline = t0 + (uint64_t)(echo_timeout * 1e9);
    unsigned char code[2] = {0x03, 0xe8};
    int sent = 0, clean = 0;
    closing_all = 1;
    for (int i = 0; i < total; i++) {
        struct conn *c = &conns[i];
        if (c->state != IDLE) continue;
        c->state = CLOSING;
        opened--;
        if (send_frame(c, 8, 0, code, 2) == 0) sent++;
    }
    for (;;) {
        int left = 0;
        for (int i = 0; i < total; i++) left += conns[i].state == CLOSING;
        if (!left || now_ns() > deadline) break;
        poll_once(50);
    }
    for (int i = 0; i < total; i++) {
        if (conns[i].state == CLOSING) finish(&conns[i], -1);
        else if (conns[i].state != DONE) finish(&conns[i], -1);
    }
    clean = sent; /* those still CLOSING at the deadline are counted below */
    printf("{\"event\": \"closed\", \"close_sent\": %d, \"seconds\": %.3f, "
           "\"closed_by_server\": %d, \"pings\": %d, ",
           clean, (double)(now_ns() - t0) / 1e9, closed_by_server, pings);
    print_reasons();
    printf("}\n");
    fflush(stdout);
}

static void on_signal(int signum) {
    (void)signum;
    stop_signal = 1;
}

static void usage(void) {
    fprintf(stderr,
            "usage: wsload -p PORT -n COUNT [-a HOST] [-b SOURCE] [-P PATH] [-c CONCURRENCY]\n"
            "              [-r RATE] [-d] [-s SIZE] [-t OPEN_TIMEOUT] [-e ECHO_TIMEOUT]\n"
            "              [-T LIFETIME]\n");
    exit(2);
}

int main(int argc, char **argv) {
    int opt;
    while ((opt = getopt(argc, argv, "a:p:n:b:P:c:r:ds:t:e:T:")) != -1) {
        switch (opt) {
        case 'a': host = optarg; break;
        case 'p': port = atoi(optarg); break;
        case 'n': total = atoi(optarg); break;
        case 'b': source = optarg; break;
        case 'P': path = optarg; break;
        case 'c': concurrency = atoi(optarg); break;
        case 'r': rate = atof(optarg); break;
        case 'd': offer_deflate = 1; break;
        case 's': msg_size = atoi(optarg); break;
        case 't': open_timeout = atof(optarg); break;
        case 'e': echo_timeout = atof(optarg); break;
        case 'T': lifetime = atof(optarg); break;
        default: usage();
        }
    }
    struct in_addr probe;
    if (port <= 0 || port > 65535 || total <= 0 || concurrency <= 0 || msg_size < 40 ||
        msg_size > MAX_MESSAGE - 64 || inet_pton(AF_INET, host, &probe) != 1 ||
        (source && inet_pton(AF_INET, source, &probe) != 1) || path[0] != '/')
        usage();
    struct rlimit lim;
    getrlimit(RLIMIT_NOFILE, &lim);
    if ((rlim_t)total + 16 > lim.rlim_max) {
        fprintf(stderr, "wsload: -n %d needs %d file descriptors; the limit is %ld\n", total,
                total + 16, (long)lim.rlim_max);
        return 2;
    }
    lim.rlim_cur = lim.rlim_max;
    setrlimit(RLIMIT_NOFILE, &lim);
    xs ^= (uint64_t)now_ns() ^ (uint64_t)getpid() << 32;
    conns = calloc((size_t)total, sizeof *conns);
    latencies = calloc((size_t)total, sizeof *latencies);
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (!conns || !latencies || epfd < 0 ||
        deflateInit2(&deflater, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK ||
        inflateInit2(&inflater, -15) != Z_OK) {
        perror("wsload");
        return 1;
    }
    for (int i = 0; i < total; i++) conns[i].fd = -1;
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    signal(SIGPIPE, SIG_IGN);
    /* stdin: the commands */
    fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
    struct epoll_event sev = {.events = EPOLLIN, .data.u32 = UINT32_MAX};
    /* Not pollable (a file, /dev/null): then only signals and -T end it. */
    epoll_ctl(epfd, EPOLL_CTL_ADD, 0, &sev);
    uint64_t end = now_ns() + (uint64_t)(lifetime * 1e9);

    open_all();
    char line[64];
    size_t line_len = 0;
    while (!stop_signal && now_ns() < end) {
        struct epoll_event events[512];
        int n = epoll_wait(epfd, events, 512, 200);
        int quit = 0;
        for (int i = 0; i < n; i++) {
            if (events[i].data.u32 != UINT32_MAX) {
                on_event(&events[i]);
                continue;
            }
            char chunk[64];
            ssize_t got = read(0, chunk, sizeof chunk);
            if (got == 0 || (got < 0 && errno != EAGAIN)) {
                quit = 1;
                continue;
            }
            for (ssize_t k = 0; k < got; k++) {
                if (chunk[k] != '\n') {
                    if (line_len < sizeof line - 1) line[line_len++] = chunk[k];
                    continue;
                }
                line[line_len] = 0;
                line_len = 0;
                if (strcmp(line, "echo") == 0) echo_round();
                else if (strcmp(line, "close") == 0) quit = 1;
                else fprintf(stderr, "wsload: unknown command %s (echo, close)\n", line);
            }
        }
        if (quit) {
            epoll_ctl(epfd, EPOLL_CTL_DEL, 0, NULL);
            break;
        }
    }
    close_all();
    return 0;
}
