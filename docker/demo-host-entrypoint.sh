#!/bin/sh
set -eu
if [ ! -f /keys/id_ed25519 ]; then
  ssh-keygen -q -t ed25519 -N '' -C shellway-demo -f /keys/id_ed25519
fi
# The runners run as uid 10001 and need to read the private key.
chown 10001 /keys/id_ed25519 && chmod 600 /keys/id_ed25519
install -d -o demo -m 700 /home/demo/.ssh
install -o demo -m 600 /keys/id_ed25519.pub /home/demo/.ssh/authorized_keys
ssh-keygen -A >/dev/null
# Publish the host key so it can be pinned (strict policy) in Shellway.
cp /etc/ssh/ssh_host_ed25519_key.pub /keys/demo-host-key.pub
exec /usr/sbin/sshd -D -e -o PasswordAuthentication=no
