// libxcrypt (Debian libcrypt-dev): the crypt(3) password hashes of htpasswd files and /etc/shadow
// (bcrypt, yescrypt, scrypt, SHA-crypt), for HTTP Basic credentials (GatewayAuth.PasswordHash).
#include <crypt.h>
