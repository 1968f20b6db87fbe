// The socket a request came on, to notice a client that hangs up while a
// non-streamed answer is generated. cpp-httplib 0.11 (Debian's) gives a
// handler no socket and no "connection closed" query, and a chunked reply
// would send its 200 before the answer's status is known; so the socket is
// found among the process's descriptors by the connection's ends.
#pragma once

#include <string>

namespace ckv::server {

// The descriptor of the TCP connection from remote_addr:remote_port to this
// host's local_port (as cpp-httplib's Request gives them); -1 if none.
int connection_socket(const std::string& remote_addr, int remote_port, int local_port);

// True once the peer has closed the connection (or it failed). Never blocks.
bool peer_closed(int fd);

}  // namespace ckv::server
