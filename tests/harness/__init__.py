"""Test harness: the Kubernetes test cluster (etcd, kube-apiserver, kwok), its kwok stages and PKI."""
