"""Cluster deployment files for MitoGAN (launcher configs, KubeRay manifests, the image) and two scripts:
``local_cluster`` (a multi-node Ray cluster on 127.0.0.1, shared with the tests) and ``secret`` (reads
the Ray token and the W&B key from a cloud secret store on the nodes). Not installed with the package."""
