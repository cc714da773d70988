//! The close codes the socket protocols end a connection with.

pub const BAD_REQUEST: u16 = 4400;
pub const UNAUTHORIZED: u16 = 4401;
pub const FORBIDDEN: u16 = 4403;
pub const INIT_TIMEOUT: u16 = 4408;
pub const DUPLICATE_ID: u16 = 4409;
pub const TOO_MANY: u16 = 4429;
pub const NORMAL: u16 = 1000;
pub const TOO_BIG: u16 = 1009;
pub const GOING_AWAY: u16 = 1001;
pub const INVALID_PAYLOAD: u16 = 1007;
