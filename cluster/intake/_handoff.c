/* The master's hand-off loop in C: accept, peek at the request line, choose the
 * worker, pass the socket over (cluster.intake._handoff).
 *
 * Hand-written for speed: the master's cost per new connection is what caps a host's
 * new connections per second (issue 19, bench/ceiling.py), and the Python loop spends
 * more of it in the interpreter than in the kernel. This module does only the common
 * case, and the same thing the Python path does with it (cluster/intake/intake.py,
 * intake_decision.py, dispatch.py, placement.py): a TCP connection whose request line
 * is there at accept (TCP_DEFER_ACCEPT), routed by the sid= of that line to a worker
 * whose channel is clean, or placed (least loaded, ties at random; or at random). Every
 * other connection (no whole request line yet, a sid of a worker not in the table, a
 * channel that is full or broken, a scoped IPv6 peer) is handed back to Python as it
 * was accepted, which decides it as it always did. cluster/intake/fast_path.py is its
 * Python side; tests/unit/cluster/test_handoff_c.py checks the sid reading against
 * cluster.protocol.sids.request_sid on generated request lines.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define ALPHABET_SIZE 64
#define PREFIX_CHARS 5   /* host (2) + tag (3): cluster.protocol.sids.PREFIX_CHARS */
#define SID_LENGTH 25    /* cluster.protocol.sids.SID_LENGTH */
#define SID_MAX 64       /* request_sid accepts 1 to 64 sid characters */
#define PEEK_MAX 16384   /* cluster.intake.intake_decision.HEAD_LIMIT */
#define CANDIDATES_MAX 1024
#define PACKET_MAX 128

/* What request_owner says besides an owner number. */
#define NO_LINE (-1)   /* no whole request line yet: Python decides */
#define NO_OWNER (-2)  /* no sid, or not one of ours: placed */

static int8_t sid_digit[256];
static uint64_t rng_state;

static void init_tables(void) {
    const char *alphabet =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    memset(sid_digit, -1, sizeof sid_digit);
    for (int i = 0; i < ALPHABET_SIZE; i++)
        sid_digit[(unsigned char)alphabet[i]] = (int8_t)i;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    rng_state = ((uint64_t)getpid() << 32) ^ (uint64_t)now.tv_nsec ^ (uint64_t)now.tv_sec;
    if (!rng_state)
        rng_state = 0x9E3779B97F4A7C15ull;
}

static uint64_t next_random(void) { /* xorshift64: ties between workers, not secrets */
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static const char *find_char(const char *from, const char *to, char c) {
    return from < to ? memchr(from, c, (size_t)(to - from)) : NULL;
}

/* The owner number (host * 64**3 + tag) of the sid= of the request line at the start of
 * head, as cluster.protocol.sids.owner_of(request_sid(head)) reads it when the line is
 * whole; NO_OWNER when it names none of ours; NO_LINE when the line is not whole. */
static long request_owner(const char *head, Py_ssize_t size) {
    const char *end = memchr(head, '\n', (size_t)size);
    if (end == NULL)
        return NO_LINE;
    if (end > head && end[-1] == '\r')
        end--;
    const char *start = find_char(head, end, ' ');
    if (start == NULL)
        return NO_OWNER;
    start++;
    const char *stop = find_char(start, end, ' ');
    if (stop == NULL)
        stop = end;
    const char *fragment = find_char(start, stop, '#');
    if (fragment != NULL)
        stop = fragment;
    const char *query = find_char(start, stop, '?');
    if (query == NULL)
        return NO_OWNER;
    const char *param = query + 1;
    while (param <= stop) {
        const char *amp = find_char(param, stop, '&');
        const char *param_end = amp ? amp : stop;
        if (param_end - param >= 4 && memcmp(param, "sid=", 4) == 0) {
            const char *value = param + 4;
            Py_ssize_t length = param_end - value;
            if (length < 1 || length > SID_MAX)
                return NO_OWNER;
            for (const char *c = value; c < param_end; c++)
                if (sid_digit[(unsigned char)*c] < 0)
                    return NO_OWNER;
            if (length != SID_LENGTH)
                return NO_OWNER;
            long owner = 0;
            for (int i = 0; i < PREFIX_CHARS; i++)
                owner = owner * ALPHABET_SIZE + sid_digit[(unsigned char)value[i]];
            return owner;
        }
        if (amp == NULL)
            break;
        param = amp + 1;
    }
    return NO_OWNER;
}

/* The client's IP as Python's socket module writes it, and its port; 0 when this path
 * does not write it the same way (a scoped IPv6 address: Python appends the scope). */
static int peer_ip(const struct sockaddr_storage *peer, char ip[INET6_ADDRSTRLEN], unsigned *port) {
    if (peer->ss_family == AF_INET) {
        const struct sockaddr_in *v4 = (const struct sockaddr_in *)peer;
        *port = ntohs(v4->sin_port);
        return inet_ntop(AF_INET, &v4->sin_addr, ip, INET6_ADDRSTRLEN) != NULL;
    }
    if (peer->ss_family == AF_INET6) {
        const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)peer;
        *port = ntohs(v6->sin6_port);
        return !v6->sin6_scope_id && inet_ntop(AF_INET6, &v6->sin6_addr, ip, INET6_ADDRSTRLEN);
    }
    return 0;
}

/* The client's "ip port" after the packet's header, as cluster.protocol.frames.
 * encode_address writes it; its length, 0 when peer_ip cannot write it. */
static int write_address(const struct sockaddr_storage *peer, char *out, size_t room) {
    char ip[INET6_ADDRSTRLEN];
    unsigned port;
    if (!peer_ip(peer, ip, &port))
        return 0;
    int written = snprintf(out, room, "%s %u", ip, port);
    return written > 0 && (size_t)written < room ? written : 0;
}

/* (ip, port) of a connection left to Python; None: Python asks the socket (getpeername). */
static PyObject *address_tuple(const struct sockaddr_storage *peer) {
    char ip[INET6_ADDRSTRLEN];
    unsigned port;
    if (!peer_ip(peer, ip, &port))
        Py_RETURN_NONE;
    return Py_BuildValue("(sI)", ip, port);
}

/* Send one hand-off packet with the client's fd; 0 on success, else errno. */
static int send_handoff(int channel, const char *packet, size_t size, int client) {
    struct iovec iov = {(void *)packet, size};
    union {
        struct cmsghdr header;
        char space[CMSG_SPACE(sizeof(int))];
    } control;
    memset(&control, 0, sizeof control);
    struct msghdr message = {0};
    message.msg_iov = &iov;
    message.msg_iovlen = 1;
    message.msg_control = control.space;
    message.msg_controllen = sizeof control.space;
    struct cmsghdr *cmsg = CMSG_FIRSTHDR(&message);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cmsg), &client, sizeof(int));
    ssize_t sent;
    do {
        sent = sendmsg(channel, &message, MSG_DONTWAIT | MSG_NOSIGNAL);
    } while (sent < 0 && errno == EINTR);
    return sent < 0 ? errno : 0;
}

/* The slot placement chooses: the least loaded (ties at random), or any at random. */
static Py_ssize_t choose(const long *loads, Py_ssize_t count, int at_random) {
    if (at_random)
        return (Py_ssize_t)(next_random() % (uint64_t)count);
    long low = loads[0];
    Py_ssize_t ties = 0, chosen = 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        if (loads[i] < low) {
            low = loads[i];
            ties = 0;
        }
        if (loads[i] == low && next_random() % (uint64_t)(++ties) == 0)
            chosen = i;  /* reservoir sampling: each tie as likely */
    }
    return chosen;
}

static int is_out_of_files(int error) {
    return error == EMFILE || error == ENFILE || error == ENOBUFS || error == ENOMEM;
}

PyDoc_STRVAR(hand_off_doc,
"hand_off(listener, limit, peek_size, header, owners, channels, loads, at_random)\n"
"    -> (ok, accepted, by_sid, placed, leftovers)\n\n"
"Accept up to ``limit`` connections from the TCP ``listener`` (an fd) and hand each\n"
"one whose request line is there: to ``owners[tag]`` (a channel fd) when its sid names\n"
"a tag in ``owners``, else to one of ``channels`` (the serving workers' channel fds),\n"
"the least loaded by ``loads`` (or at random with ``at_random``), each packet being\n"
"``header`` + b\"ip port\". ``ok`` is False when out of file descriptors; ``by_sid``\n"
"counts the connections sent to their owner, ``placed`` those sent to each channel;\n"
"``leftovers`` are (fd, (ip, port) or None) for Python to decide, accepted and untouched.");

static PyObject *hand_off(PyObject *self, PyObject *args) {
    int listener, at_random;
    Py_ssize_t limit, peek_size;
    const char *header;
    Py_ssize_t header_size;
    PyObject *owners, *channels, *loads_in;
    if (!PyArg_ParseTuple(args, "inny#O!OOp", &listener, &limit, &peek_size, &header,
                          &header_size, &PyDict_Type, &owners, &channels, &loads_in,
                          &at_random))
        return NULL;
    Py_ssize_t count = PySequence_Size(channels);
    if (count < 0 || PySequence_Size(loads_in) != count)
        return PyErr_Occurred() ? NULL : PyErr_Format(PyExc_ValueError, "channels and loads differ");
    if (count < 1 || count > CANDIDATES_MAX || peek_size < 1 || peek_size > PEEK_MAX ||
        header_size < 0 || header_size > 16)
        return PyErr_Format(PyExc_ValueError, "bad arguments");
    int channel_fds[CANDIDATES_MAX];
    long loads[CANDIDATES_MAX], placed[CANDIDATES_MAX];
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *fd = PySequence_GetItem(channels, i), *load = PySequence_GetItem(loads_in, i);
        channel_fds[i] = fd ? (int)PyLong_AsLong(fd) : -1;
        loads[i] = load ? PyLong_AsLong(load) : 0;
        placed[i] = 0;
        Py_XDECREF(fd);
        Py_XDECREF(load);
        if (PyErr_Occurred())
            return NULL;
    }
    PyObject *leftovers = PyList_New(0);
    if (leftovers == NULL)
        return NULL;
    char head[PEEK_MAX];
    char packet[PACKET_MAX];
    memcpy(packet, header, (size_t)header_size);
    long accepted = 0, by_sid = 0;
    int ok = 1, stop = 0;
    while (accepted < limit && !stop) {
        struct sockaddr_storage peer;
        socklen_t peer_size = sizeof peer;
        int client;
        Py_BEGIN_ALLOW_THREADS
        client = accept4(listener, (struct sockaddr *)&peer, &peer_size, SOCK_CLOEXEC);
        Py_END_ALLOW_THREADS
        if (client < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
                break;
            if (is_out_of_files(errno)) {
                ok = 0;
                break;
            }
            continue;  /* the client went away before accept (ECONNABORTED …) */
        }
        accepted++;
        int address_size = write_address(&peer, packet + header_size,
                                         sizeof packet - (size_t)header_size);
        ssize_t got = address_size ? recv(client, head, (size_t)peek_size, MSG_PEEK | MSG_DONTWAIT) : -1;
        long owner = got > 0 ? request_owner(head, got) : NO_LINE;
        int sent = 0;
        if (owner != NO_LINE) {
            size_t size = (size_t)header_size + (size_t)address_size;
            int error = -1;
            if (owner >= 0) {
                PyObject *key = PyLong_FromLong(owner % (ALPHABET_SIZE * ALPHABET_SIZE * ALPHABET_SIZE));
                PyObject *fd = key ? PyDict_GetItemWithError(owners, key) : NULL;
                Py_XDECREF(key);
                if (PyErr_Occurred()) {
                    close(client);
                    goto fail;
                }
                if (fd != NULL) {
                    error = send_handoff((int)PyLong_AsLong(fd), packet, size, client);
                    by_sid += error == 0;
                }
            } else {
                Py_ssize_t slot = choose(loads, count, at_random);
                error = send_handoff(channel_fds[slot], packet, size, client);
                if (error == 0) {
                    loads[slot]++;
                    placed[slot]++;
                }
            }
            sent = error == 0;
            stop = error > 0;  /* a full or broken channel: Python takes over from here */
        }
        if (sent) {
            close(client);
            continue;
        }
        PyObject *address = address_tuple(&peer);
        PyObject *item = address ? Py_BuildValue("(iN)", client, address) : NULL;
        if (item == NULL || PyList_Append(leftovers, item) < 0) {
            Py_XDECREF(item);
            close(client);
            goto fail;
        }
        Py_DECREF(item);
    }
    PyObject *placed_list = PyList_New(count);
    if (placed_list == NULL)
        goto fail;
    for (Py_ssize_t i = 0; i < count; i++)
        PyList_SET_ITEM(placed_list, i, PyLong_FromLong(placed[i]));
    return Py_BuildValue("(NllNN)", PyBool_FromLong(ok), accepted, by_sid, placed_list, leftovers);
fail:  /* out of memory: nothing accepted may leak */
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(leftovers); i++)
        close((int)PyLong_AsLong(PyTuple_GET_ITEM(PyList_GET_ITEM(leftovers, i), 0)));
    Py_DECREF(leftovers);
    return NULL;
}

PyDoc_STRVAR(request_owner_doc,
"request_owner(head) -> int | None | -1\n\n"
"The owner number of the sid= of head's request line (as cluster.protocol.sids.owner_of\n"
"reads request_sid's), None when it names none of ours, -1 when the line is not whole.");

static PyObject *py_request_owner(PyObject *self, PyObject *arg) {
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    long owner = request_owner(view.buf, view.len);
    PyBuffer_Release(&view);
    if (owner == NO_OWNER)
        Py_RETURN_NONE;
    return PyLong_FromLong(owner);
}

static PyMethodDef methods[] = {
    {"hand_off", hand_off, METH_VARARGS, hand_off_doc},
    {"request_owner", py_request_owner, METH_O, request_owner_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "cluster.intake._handoff",
    "The master's accept, peek and hand-off loop in C (see cluster.intake.fast_path).", -1,
    methods,
};

PyMODINIT_FUNC PyInit__handoff(void) {
    init_tables();
    return PyModule_Create(&module);
}
