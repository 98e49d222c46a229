//! The uwsgi protocol: the request packet (`packet`) and the response head uWSGI answers with
//! (`head`). Pure codecs; nothing else in uwgate knows the protocol.

pub mod head;
pub mod packet;
