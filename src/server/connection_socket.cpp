#include "server/connection_socket.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <cstdlib>
#include <memory>

namespace ckv::server {

namespace {

// The address and port of a socket end, in getnameinfo's numeric form.
bool end_of(const sockaddr_storage& a, std::string& ip, int& port) {
  char b[INET6_ADDRSTRLEN] = {};
  if (a.ss_family == AF_INET) {
    const auto& s = reinterpret_cast<const sockaddr_in&>(a);
    if (!inet_ntop(AF_INET, &s.sin_addr, b, sizeof b)) return false;
    port = ntohs(s.sin_port);
  } else if (a.ss_family == AF_INET6) {
    const auto& s = reinterpret_cast<const sockaddr_in6&>(a);
    if (!inet_ntop(AF_INET6, &s.sin6_addr, b, sizeof b)) return false;
    port = ntohs(s.sin6_port);
  } else {
    return false;
  }
  ip = b;
  return true;
}

}  // namespace

int connection_socket(const std::string& remote_addr, int remote_port, int local_port) {
  if (remote_port <= 0 || local_port <= 0) return -1;
  std::unique_ptr<DIR, int (*)(DIR*)> dir(opendir("/proc/self/fd"), closedir);
  if (!dir) return -1;
  while (const dirent* e = readdir(dir.get())) {
    char* end = nullptr;
    const long fd = std::strtol(e->d_name, &end, 10);
    if (end == e->d_name || *end != '\0' || fd < 0) continue;
    struct stat st{};
    if (fstat(static_cast<int>(fd), &st) != 0 || !S_ISSOCK(st.st_mode)) continue;
    sockaddr_storage local{}, peer{};
    socklen_t ll = sizeof local, pl = sizeof peer;
    std::string lip, pip;
    int lport = 0, pport = 0;
    if (getsockname(static_cast<int>(fd), reinterpret_cast<sockaddr*>(&local), &ll) != 0 ||
        getpeername(static_cast<int>(fd), reinterpret_cast<sockaddr*>(&peer), &pl) != 0)
      continue;  // not connected (the listening socket, a pipe's other end)
    if (!end_of(local, lip, lport) || !end_of(peer, pip, pport)) continue;
    if (lport == local_port && pport == remote_port && pip == remote_addr) return static_cast<int>(fd);
  }
  return -1;
}

bool peer_closed(int fd) {
  pollfd p{fd, POLLRDHUP, 0};
  if (poll(&p, 1, 0) < 0) return true;
  return (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) != 0;
}

}  // namespace ckv::server
