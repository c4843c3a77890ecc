"""S3-only behaviour on a real S3 server (Ceph RGW): several processes on one bucket,
redirected pulls, and the catalog of a bucket with thousands of repositories."""
