/* os_net.h — the platform layer's sockets (base/os.h has the rest): the system's socket headers
 * (POSIX: sys/socket.h, netinet/in.h, arpa/inet.h, netdb.h; Windows: winsock2.h, ws2tcpip.h) and
 * the few calls that differ. Only the server (src/serve/http.c, under libmicrohttpd), the image
 * URLs' fetch (src/hub/fetch_url.c: the addresses libcurl connects to) and the CLI's client of a
 * running server (`lfm2c ps` / `stop`) use sockets. A socket is an int on
 * both (a Windows SOCKET fits: the handles are small). Implemented in os_posix.c / os_win32.c. */
#ifndef LFM2C_BASE_OS_NET_H
#define LFM2C_BASE_OS_NET_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#if defined(_WIN32)
#include <winsock2.h>
#include <ws2tcpip.h>
#else
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#endif

bool os_net_init(void); /* Windows: WSAStartup, once; POSIX: nothing */
/* A TCP connection to host:port (IPv4) with send and receive timeouts of timeout_s; -1 on
 * failure (errno set). */
int os_tcp_connect(const char *host, int port, double timeout_s);
int64_t os_sock_send(int fd, const void *buf, size_t n);
/* A small write that must not wait (the server's interim answers): what fits now, -1 else. */
int64_t os_sock_send_nowait(int fd, const void *buf, size_t n);
int64_t os_sock_recv(int fd, void *buf, size_t n);
void os_sock_shutdown(int fd); /* both directions: the peer and our own blocked calls see the end */
void os_sock_close(int fd);
/* Is addr (IPv4, network order) one of this machine's own addresses: an interface's (POSIX), or
 * one its host name resolves to (Windows)? A server bound to 0.0.0.0 answers on each. */
bool os_own_ipv4(uint32_t addr);
/* Broken: reset by the peer, or our own writes failed (not a half-close). */
bool os_sock_broken(int fd);
/* The peer shut down its sending side (a half-close, or a close seen as one); never blocks. */
bool os_sock_peer_closed(int fd);
/* Room for `want` open descriptors: raises the soft limit (POSIX RLIMIT_NOFILE); the number the
 * limit allows now, want where there is no such limit (Windows). */
int os_fd_limit(int want);
#endif
